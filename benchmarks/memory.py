"""Peak step memory and tokens/s at a 151,936-token vocabulary: kitchen's chunked LM head vs
kitchen's old full-logits path vs plain transformers ``model(labels=...)`` vs TRL ``SFTTrainer``.

Model: a from-config Llama, 2 layers, 256 wide, Qwen2.5's vocabulary (151,936, tied
embeddings), LoRA r=16 on every linear layer, float32 on CPU (bf16 on CUDA via
``model.dtype: auto``). Each contender runs in a **fresh subprocess** per shape, one at a
time, so no allocator state or cached buffer leaks between them:

1. build the model, the optimizer and the batches; collect garbage;
2. baseline = resident memory now (CPU) / ``memory_allocated`` (CUDA);
3. reset the peak (Linux ``/proc/self/clear_refs`` "5" resets ``VmHWM``; CUDA
   ``reset_peak_memory_stats``), run ``--steps`` steps of one ``forward_backward`` (or the
   contender's equivalent) + one AdamW step each;
4. step peak = peak − baseline; tokens/s over the steps after the first (warm-up).

Contenders: ``kitchen`` (``HfTrainingClient``, ``logprob_chunk_size`` default),
``kitchen-unchunked`` (the same client with ``logprob_chunk_size=0``: today's full-logits
path, so "no slower than before" is measured), ``transformers`` (``model(input_ids,
labels=...)``, ``loss.backward()``, AdamW), ``trl`` (``SFTTrainer`` with default settings,
its own collator and loss).

Usage::

    python benchmarks/memory.py                  # 4x1024 all contenders, 8x4096 kitchen only
    python benchmarks/memory.py --quick          # 1x256 and 2x512, for iteration
    python benchmarks/memory.py --shapes 4x1024 --contenders kitchen,trl

The last line is ``RESULT kitchen_peak_gb=<x> kitchen_vs_trl=<r> kitchen_vs_unchunked_tps=<r>``
(goals: peak <= 1.0 GB at 4x1024, <= 0.2x TRL's, tokens/s >= 1.0x the unchunked path).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VOCAB = 151_936
MODEL_CONFIG: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "vocab_size": VOCAB,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}
LORA = {"rank": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}
LR = 1e-4
CONTENDERS = ("kitchen", "kitchen-unchunked", "transformers", "trl")
#: Shapes too big for the full-logits contenders on a 24 GiB machine run kitchen only.
BIG_ONLY = ("kitchen",)


# --- memory probes ----------------------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class Meter:
    """Memory now and the peak since :meth:`reset`, in bytes (RSS on CPU, allocator on CUDA)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.torch = torch
        self.cuda = device.type == "cuda"

    def now(self) -> int:
        if self.cuda:
            self.torch.cuda.synchronize()
            return int(self.torch.cuda.memory_allocated())
        return _status_kb("VmRSS") * 1024

    def reset(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
            return
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS

    def peak(self) -> int:
        if self.cuda:
            self.torch.cuda.synchronize()
            return int(self.torch.cuda.max_memory_allocated())
        return _status_kb("VmHWM") * 1024


# --- data -------------------------------------------------------------------------------


def rows(batch: int, seq: int, seed: int) -> list[list[int]]:
    """``batch`` sequences of ``seq + 1`` ids (inputs and next-token targets)."""
    import random

    rng = random.Random(seed)
    return [[rng.randrange(4, VOCAB) for _ in range(seq + 1)] for _ in range(batch)]


def spec(**extra: Any) -> Any:
    from kitchen.adapters.hf.model_spec import ModelSpec

    return ModelSpec.model_validate(
        {
            "config": MODEL_CONFIG,
            "mode": "lora",
            "lora": LORA,
            "seed": 0,
            "attn_implementation": "sdpa",
            **extra,
        }
    )


# --- contenders (each in its own process) -------------------------------------------------


def run_kitchen(batch: int, seq: int, steps: int, chunk: int | None) -> dict[str, Any]:
    from kitchen.adapters.hf.training import HfTrainingClient
    from kitchen.ports import AdamParams
    from kitchen.testing.datums import ce_datum

    extra = {} if chunk is None else {"logprob_chunk_size": chunk}
    client = HfTrainingClient(spec(**extra))
    client.load().result()
    data = [[ce_datum(r) for r in rows(batch, seq, seed=i)] for i in range(steps)]
    adam = AdamParams(learning_rate=LR, grad_clip_norm=1.0)

    def step(i: int) -> None:
        fb = client.forward_backward(data[i], "cross_entropy")
        client.optim_step(adam).result()
        fb.result()

    out = _measure(client.device, step, steps, batch * seq)
    out["chunk"] = client.spec.logprob_chunk_size
    client.close()
    return out


def run_transformers(batch: int, seq: int, steps: int) -> dict[str, Any]:
    import torch

    from kitchen.adapters.hf.model_spec import load_model

    lm = load_model(spec())
    model = lm.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR)
    batches = []
    for i in range(steps):
        t = torch.tensor(rows(batch, seq, seed=i), device=lm.device)
        batches.append(t[:, :-1].contiguous())

    def step(i: int) -> None:
        ids = batches[i]
        # transformers shifts labels itself: pass the row, ask it to score every next token.
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())

    return _measure(lm.device, step, steps, batch * seq)


def run_trl(batch: int, seq: int, steps: int) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from kitchen.adapters.hf.model_spec import load_model

    sys.path.insert(0, str(REPO / "benchmarks"))
    from sft_throughput import simple_tokenizer

    lm = load_model(spec())
    meter = Meter(lm.device)
    data = [r[:-1] for i in range(steps) for r in rows(batch, seq, seed=i)]
    marks: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if lm.device.type == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    sink = io.StringIO()
    with warnings.catch_warnings(), redirect_stdout(sink), redirect_stderr(sink):
        warnings.simplefilter("ignore")
        args = SFTConfig(
            output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "kitchen-bench-mem-trl"),
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=LR,
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_grad_norm=1.0,
            optim="adamw_torch",
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=lm.device.type == "cpu",
            dataloader_num_workers=0,
            seed=0,
            max_length=seq,
            packing=False,
            bf16=lm.device.type == "cuda",
        )
        trainer = SFTTrainer(
            model=lm.model,
            args=args,
            train_dataset=Dataset.from_dict({"input_ids": data}),
            processing_class=simple_tokenizer(VOCAB),
            callbacks=[Clock()],
        )
        gc.collect()
        base = meter.now()
        meter.reset()
        t0 = time.perf_counter()
        trainer.train()
    peak = meter.peak()
    return _result(base, peak, [t0, *marks], batch * seq)


def _measure(device: Any, step: Any, steps: int, tokens_per_step: int) -> dict[str, Any]:
    meter = Meter(device)
    gc.collect()
    base = meter.now()
    meter.reset()
    marks = [time.perf_counter()]
    for i in range(steps):
        step(i)
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize()
        marks.append(time.perf_counter())
    return _result(base, meter.peak(), marks, tokens_per_step)


def _result(base: int, peak: int, marks: list[float], tokens_per_step: int) -> dict[str, Any]:
    timed = marks[1:]  # the end of step 1 (warm-up) to the end of the last step
    secs = timed[-1] - timed[0] if len(timed) > 1 else marks[-1] - marks[0]
    n_steps = max(1, len(timed) - 1)
    return {
        "base_gb": base / 1e9,
        "step_peak_gb": (peak - base) / 1e9,
        "tokens_per_s": tokens_per_step * n_steps / secs if secs > 0 else float("nan"),
        "step_s": secs / n_steps,
    }


def worker(args: argparse.Namespace) -> int:
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    b, L = (int(x) for x in args.shape.split("x"))
    name = args.worker
    if name == "kitchen":
        out = run_kitchen(b, L, args.steps, args.chunk)
    elif name == "kitchen-unchunked":
        out = run_kitchen(b, L, args.steps, 0)
    elif name == "transformers":
        out = run_transformers(b, L, args.steps)
    elif name == "trl":
        out = run_trl(b, L, args.steps)
    else:
        raise SystemExit(f"unknown contender {name!r}")
    print("WORKER " + json.dumps(out), flush=True)
    return 0


# --- driver --------------------------------------------------------------------------------


def spawn(name: str, shape: str, args: argparse.Namespace) -> dict[str, Any] | str:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--shape",
        shape,
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    if args.chunk is not None:
        cmd += ["--chunk", str(args.chunk)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("WORKER "):
            result: dict[str, Any] = json.loads(line[len("WORKER ") :])
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return f"failed (rc {proc.returncode}): {' | '.join(tail)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=None, help="BxT[,BxT...] (default 4x1024,8x2048)")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--steps", type=int, default=3, help="steps per contender (1st = warm-up)")
    ap.add_argument("--chunk", type=int, default=None, help="kitchen's logprob_chunk_size")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--quick", action="store_true", help="1x256 and 2x512, for iteration")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    import torch
    import transformers
    import trl
    from rich.console import Console
    from rich.table import Table

    from kitchen.adapters.hf.device import resolve_placement

    shapes = (args.shapes or ("1x256,2x512" if args.quick else "4x1024,8x2048")).split(",")
    main_shape = shapes[0]
    wanted = [c for c in args.contenders.split(",") if c]
    place = resolve_placement(spec())
    console = Console(width=150)
    load = os.getloadavg()
    console.print(
        f"model: llama 2x256, vocab {VOCAB:,} (tied), LoRA r={LORA['rank']}, "
        f"{place.device} {place.dtype_name}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}; {os.cpu_count()} CPUs, load "
        f"{load[0]:.1f} at start; steps {args.steps} (1 warm-up)"
    )
    results: dict[tuple[str, str], dict[str, Any] | str] = {}
    for shape in shapes:
        for name in wanted:
            if shape != main_shape and name not in BIG_ONLY:
                results[(shape, name)] = "not run (full logits need > 24 GiB here)"
                continue
            t0 = time.perf_counter()
            res = spawn(name, shape, args)
            results[(shape, name)] = res
            shown = (
                res
                if isinstance(res, str)
                else f"step peak {res['step_peak_gb']:.3f} GB, {res['tokens_per_s']:.0f} tok/s"
            )
            console.print(f"  {shape} {name:<18} {shown}  ({time.perf_counter() - t0:.0f} s)")

    table = Table(title=f"step peak memory above the loaded model ({place.device}) and tokens/s")
    cols = ("shape", "contender", "step peak GB", "tok/s", "peak vs TRL", "peak vs kitchen")
    for col in (*cols, "tok/s vs unchunked"):
        table.add_column(col, justify="left" if col in ("shape", "contender") else "right")

    def get(shape: str, name: str) -> dict[str, Any] | None:
        r = results.get((shape, name))
        return r if isinstance(r, dict) else None

    for shape in shapes:
        trl_r, kit_r, old_r = (
            get(shape, "trl"),
            get(shape, "kitchen"),
            get(shape, "kitchen-unchunked"),
        )
        for name in wanted:
            r = results[(shape, name)]
            if isinstance(r, str):
                table.add_row(shape, name, r, "", "", "", "")
                continue

            def ratio(other: dict[str, Any] | None, key: str, res: dict[str, Any] = r) -> str:
                return f"{res[key] / other[key]:.3f}" if other and other[key] else "-"

            table.add_row(
                shape,
                name,
                f"{r['step_peak_gb']:.3f}",
                f"{r['tokens_per_s']:.0f}",
                ratio(trl_r, "step_peak_gb"),
                ratio(kit_r, "step_peak_gb"),
                ratio(old_r, "tokens_per_s"),
            )
    console.print(table)
    k, t, o = (
        get(main_shape, "kitchen"),
        get(main_shape, "trl"),
        get(main_shape, "kitchen-unchunked"),
    )
    nan = float("nan")
    peak = k["step_peak_gb"] if k else nan
    vs_trl = k["step_peak_gb"] / t["step_peak_gb"] if k and t else nan
    vs_old = k["tokens_per_s"] / o["tokens_per_s"] if k and o else nan
    print(
        f"RESULT shape={main_shape} kitchen_peak_gb={peak:.3f} kitchen_vs_trl={vs_trl:.3f} "
        f"kitchen_vs_unchunked_tps={vs_old:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

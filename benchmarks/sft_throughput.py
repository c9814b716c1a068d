"""HF local SFT tokens/s: kitchen vs a hand-written torch+peft loop vs TRL ``SFTTrainer``.

Everything runs side by side in one process on the same from-config Llama (same init: every
contender builds its own copy with ``kitchen.adapters.hf.model_spec.load_model`` and the same
seed), the same LoRA config, batch, learning rate (constant), AdamW, grad clip 1.0, no eval,
no logging, no checkpoints. Contenders are interleaved in rounds (one warm-up step, then
``--steps`` timed steps per contender per round) and the median round is reported, so a
noisy neighbour on a shared machine hits all of them alike.

Cases:

- **fixed length** (every sequence ``--seq-len`` tokens, no padding): kitchen (the supervised
  workflow's own stages — ``forward_backward`` / ``optim_step`` / ``log_step`` — run by the
  kitchen runner over ``HfTrainingClient``, pipelined), the raw loop, and TRL.
- **packing** (a mixed-length corpus, 16..``--seq-len`` tokens, log-uniform): kitchen with
  ``packing=True`` (each call packed best-fit-decreasing into rows of ``--seq-len``), kitchen
  padded (for reference), and TRL with its own packing (``packing=True``: BFD, padding-free).
  Each step gets about ``batch × seq_len`` real tokens; tokens/s counts real tokens only.

The last line is ``RESULT kitchen_vs_raw=<r> kitchen_vs_trl=<r> packed_vs_trl=<r>``
(targets: kitchen_vs_raw >= 0.98, kitchen_vs_trl >= 1.0). Usage::

    python benchmarks/sft_throughput.py [--rounds 5] [--steps 3] [--batch 8] [--seq-len 256]
        [--quick]  # a smaller model for a smoke run
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: ~13.7M parameters (3.1M of them the tied 8192 x 384 embedding).
MODEL_CONFIG: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 384,
    "intermediate_size": 1024,
    "num_hidden_layers": 6,
    "num_attention_heads": 6,
    "num_key_value_heads": 6,
    "vocab_size": 8192,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}
QUICK_CONFIG = {
    **MODEL_CONFIG,
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "vocab_size": 2048,
}
LORA = {"rank": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}
LR = 1e-4


def spec_for(config: dict[str, Any], **extra: Any) -> Any:
    from kitchen.adapters.hf.model_spec import ModelSpec

    return ModelSpec.model_validate(
        {
            "config": config,
            "mode": "lora",
            "lora": LORA,
            "seed": 0,
            "attn_implementation": "sdpa",
            **extra,
        }
    )


# --- data -----------------------------------------------------------------------------


def make_sequences(
    n: int, lengths: Callable[[random.Random], int], vocab: int, seed: int
) -> list[list[int]]:
    """Token sequences from a fixed random bigram chain (learnable, not uniform noise)."""
    rng = random.Random(seed)
    nxt = [[rng.randrange(4, vocab) for _ in range(8)] for _ in range(vocab)]
    out = []
    for _ in range(n):
        k = lengths(rng)
        t = rng.randrange(4, vocab)
        seq = [t]
        for _ in range(k):  # k + 1 tokens: k inputs and k next-token targets
            t = rng.choice(nxt[t]) if rng.random() < 0.9 else rng.randrange(4, vocab)
            seq.append(t)
        out.append(seq)
    return out


def datum(seq: list[int]) -> Any:
    from kitchen.ports.types import Datum, ModelInput, TensorData

    n = len(seq) - 1
    return Datum(
        ModelInput.from_ints(seq[:-1]),
        {
            "target_tokens": TensorData(tuple(seq[1:]), "int64"),
            "weights": TensorData((1.0,) * n, "float32"),
        },
    )


def token_batches(seqs: list[list[int]], budget: int) -> list[list[list[int]]]:
    """Consecutive sequences grouped so each group holds about ``budget`` input tokens."""
    out, cur, n = [], [], 0
    for s in seqs:
        if cur and n + len(s) - 1 > budget:
            out.append(cur)
            cur, n = [], 0
        cur.append(s)
        n += len(s) - 1
    if cur:
        out.append(cur)
    return out


# --- contenders ---------------------------------------------------------------------
# Each exposes run(batches) -> (input tokens, seconds): one warm-up step (untimed), then
# the remaining steps timed end to end (pipelined work drained before the clock stops).


class Kitchen:
    """The supervised workflow's stages under the kitchen runner, over HfTrainingClient."""

    name = "kitchen"

    def __init__(self, spec: Any, batch_size: int, packing: bool = False) -> None:
        from kitchen.adapters.hf.training import HfTrainingClient
        from kitchen.context import Context
        from kitchen.dsl import loop, stage, workflow
        from kitchen.ports.bundle import Ports
        from kitchen.runner.runner import Runner
        from kitchen.workflows.supervised import SupervisedConfig
        from kitchen.workflows.supervised import stages as s

        self.client = HfTrainingClient(spec, packing=packing)
        self.client.load().result()
        cfg = SupervisedConfig(
            batch_size=batch_size,
            learning_rate=LR,
            lr_schedule="constant",
            beta2=0.999,
            grad_clip_norm=1.0,
            weight_decay=0.0,
            checkpoint_every=0,
        )
        self.ctx = Context(cfg, Ports(training=self.client))
        self.ctx.state["step"] = 0
        self.runner = Runner()

        def batches(ctx: Any) -> list[list[int]]:
            return ctx.vars["round"]

        self.wf = workflow(
            "sft-bench",
            loop(
                "epoch",
                1,
                loop(
                    "batch",
                    batches,
                    stage(s.forward_backward),
                    stage(s.optim_step),
                    stage(s.log_step, name="log"),
                ),
                stage(s.drain),
            ),
        )

    def _steps(self, batches: list[list[Any]]) -> None:
        train: list[Any] = []
        idx = []
        for b in batches:
            idx.append(list(range(len(train), len(train) + len(b))))
            train += b
        self.ctx.vars["train"] = train
        self.ctx.vars["round"] = idx
        self.runner.run(self.wf, self.ctx)

    def run(self, batches: list[list[Any]]) -> tuple[int, float]:
        self._steps(batches[:1])
        t0 = time.perf_counter()
        self._steps(batches[1:])
        dt = time.perf_counter() - t0
        return sum(d.model_input.length for b in batches[1:] for d in b), dt

    @staticmethod
    def prepare(seqs: list[list[list[int]]]) -> list[list[Any]]:
        return [[datum(s) for s in b] for b in seqs]

    def close(self) -> None:
        self.client.close()


class Raw:
    """A hand-written torch + peft loop: pad, forward, mean CE, backward, clip, AdamW."""

    name = "torch+peft loop"

    def __init__(self, spec: Any) -> None:
        import torch

        from kitchen.adapters.hf.model_spec import load_model

        self.torch = torch
        self.model = load_model(spec).model
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = params
        self.opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    @staticmethod
    def prepare(seqs: list[list[list[int]]]) -> list[Any]:
        import torch

        out = []
        for b in seqs:
            width = max(len(s) - 1 for s in b)
            ids = torch.zeros((len(b), width), dtype=torch.long)
            labels = torch.full((len(b), width), -100, dtype=torch.long)
            mask = torch.zeros((len(b), width), dtype=torch.long)
            for i, s in enumerate(b):
                n = len(s) - 1
                ids[i, :n] = torch.tensor(s[:-1])
                labels[i, :n] = torch.tensor(s[1:])
                mask[i, :n] = 1
            out.append((ids, labels, mask, int(mask.sum())))
        return out

    def step(self, ids: Any, labels: Any, mask: Any) -> None:
        F = self.torch.nn.functional
        logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        float(loss.detach())  # what a loop logs

    def run(self, batches: list[Any]) -> tuple[int, float]:
        self.step(*batches[0][:3])
        t0 = time.perf_counter()
        for ids, labels, mask, _ in batches[1:]:
            self.step(ids, labels, mask)
        return sum(b[3] for b in batches[1:]), time.perf_counter() - t0

    def close(self) -> None:
        pass


def simple_tokenizer(vocab: int) -> Any:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t3"))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="t0", eos_token="t1", bos_token="t2", unk_token="t3"
    )


class Trl:
    """TRL SFTTrainer on pre-tokenised rows; a fresh trainer per round (same model)."""

    name = "TRL SFTTrainer"

    def __init__(
        self, spec: Any, vocab: int, batch_size: int, seq_len: int, packing: bool = False
    ) -> None:
        from kitchen.adapters.hf.model_spec import load_model

        self.model = load_model(spec).model
        self.tok = simple_tokenizer(vocab)
        self.batch_size, self.seq_len, self.packing = batch_size, seq_len, packing

    @staticmethod
    def prepare(seqs: list[list[list[int]]]) -> list[list[int]]:
        # One row per sequence (its k input tokens); TRL shifts labels inside the model.
        return [s[:-1] for b in seqs for s in b]

    def run(self, rows: list[list[int]]) -> tuple[int, float]:
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer

        marks: list[tuple[float, int]] = []

        class Clock(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                marks.append((time.perf_counter(), state.global_step))

        seen: list[int] = []
        steps = math.ceil(len(rows) / self.batch_size) if not self.packing else None
        if self.packing:
            from kitchen.adapters.hf.packing import best_fit_decreasing

            rows_packed = best_fit_decreasing([len(r) for r in rows], self.seq_len)
            steps = math.ceil(len(rows_packed) / self.batch_size)
        quiet = warnings.catch_warnings()
        quiet.__enter__()
        warnings.simplefilter("ignore")
        args = SFTConfig(
            output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "kitchen-bench-trl"),
            max_steps=int(steps or 1),
            per_device_train_batch_size=self.batch_size,
            learning_rate=LR,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            optim="adamw_torch",
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
            seed=0,
            max_length=self.seq_len,
            packing=self.packing,
            bf16=False,
            fp16=False,
        )
        quiet.__exit__(None, None, None)
        ds = Dataset.from_dict({"input_ids": rows})
        sink = io.StringIO()
        with warnings.catch_warnings(), redirect_stdout(sink), redirect_stderr(sink):
            warnings.simplefilter("ignore")
            trainer = SFTTrainer(
                model=self.model,
                args=args,
                train_dataset=ds,
                processing_class=self.tok,
                callbacks=[Clock()],
            )
            collate = trainer.data_collator

            def counting(features: list[Any]) -> Any:
                batch = collate(features)
                if "attention_mask" in batch:  # padded: real tokens only
                    seen.append(int(batch["attention_mask"].sum()))
                else:  # padding-free: one flattened row of real tokens
                    seen.append(int(batch["input_ids"].numel()))
                return batch

            trainer.data_collator = counting
            trainer.train()
        # Time from the end of step 1 (warm-up) to the end of the last step.
        (t_first, _), (t_last, _) = marks[0], marks[-1]
        tokens = sum(seen[1 : len(marks)])
        return tokens, t_last - t_first

    def close(self) -> None:
        pass


# --- driver ---------------------------------------------------------------------------


def measure(contenders: list[tuple[str, Any, Any]], rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds: every contender once per round, order rotated each round."""
    out: dict[str, list[float]] = {label: [] for label, _, _ in contenders}
    for r in range(rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for label, obj, data in order:
            tokens, secs = obj.run(data)
            out[label].append(tokens / secs)
            print(
                f"  round {r + 1} {label:<28} {tokens / secs:9.1f} tok/s "
                f"({tokens} tokens, {secs:.2f} s)",
                flush=True,
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--quick", action="store_true", help="small model, for a smoke run")
    ap.add_argument("--skip-packing", action="store_true")
    args = ap.parse_args(argv)

    import torch
    import transformers
    import trl
    from rich.console import Console
    from rich.table import Table

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = QUICK_CONFIG if args.quick else MODEL_CONFIG
    vocab = int(config["vocab_size"])
    spec = spec_for(config)
    steps = args.steps + 1  # + warm-up
    b, L = args.batch, args.seq_len

    from kitchen.adapters.hf.model_spec import load_model

    n_params = sum(p.numel() for p in load_model(spec).model.parameters())
    console = Console()
    console.print(
        f"model: llama {n_params / 1e6:.1f}M params (LoRA r={LORA['rank']}), "
        f"seq {L}, batch {b}, torch {torch.__version__} threads "
        f"{torch.get_num_threads()}, transformers {transformers.__version__}, "
        f"trl {trl.__version__}, device cpu"
    )

    # Fixed-length case: every sequence exactly L inputs.
    fixed = make_sequences(steps * b, lambda rng: L, vocab, seed=1)
    fixed_groups = [fixed[i : i + b] for i in range(0, len(fixed), b)]
    kitchen = Kitchen(spec, b)
    raw = Raw(spec)
    trl_fixed = Trl(spec, vocab, b, L)
    fixed_runs = measure(
        [
            ("kitchen", kitchen, Kitchen.prepare(fixed_groups)),
            ("torch+peft loop", raw, Raw.prepare(fixed_groups)),
            ("TRL SFTTrainer", trl_fixed, Trl.prepare(fixed_groups)),
        ],
        args.rounds,
    )
    kitchen.close()

    packed_runs: dict[str, list[float]] = {}
    if not args.skip_packing:
        lo = 16

        def mixed_len(rng: random.Random) -> int:
            return round(math.exp(rng.uniform(math.log(lo), math.log(L))))

        mixed = make_sequences(steps * b * 4, mixed_len, vocab, seed=2)
        groups = token_batches(mixed, b * L)[:steps]
        k_packed = Kitchen(spec.model_copy(update={"pack_length": L}), b, packing=True)
        k_padded = Kitchen(spec, b)
        trl_packed = Trl(spec, vocab, b, L, packing=True)
        packed_runs = measure(
            [
                ("kitchen packed", k_packed, Kitchen.prepare(groups)),
                ("kitchen padded", k_padded, Kitchen.prepare(groups)),
                ("TRL packed", trl_packed, Trl.prepare(groups)),
            ],
            args.rounds,
        )
        k_packed.close()
        k_padded.close()

    table = Table(
        title=f"SFT tokens/s (median of {args.rounds} interleaved rounds, "
        f"{args.steps} timed steps each)"
    )
    for col in ("case", "contender", "median tok/s", "min", "max", "vs raw", "vs TRL"):
        table.add_column(col, justify="left" if col in ("case", "contender") else "right")
    med = {k: statistics.median(v) for k, v in {**fixed_runs, **packed_runs}.items()}
    for case, runs, base_raw, base_trl in (
        ("fixed len", fixed_runs, "torch+peft loop", "TRL SFTTrainer"),
        ("mixed len", packed_runs, None, "TRL packed"),
    ):
        for label, vals in runs.items():
            vs_raw = f"{med[label] / med[base_raw]:.3f}" if base_raw else "-"
            table.add_row(
                case,
                label,
                f"{med[label]:.1f}",
                f"{min(vals):.1f}",
                f"{max(vals):.1f}",
                vs_raw,
                f"{med[label] / med[base_trl]:.3f}",
            )
    console.print(table)

    def paired(a: str, b: str) -> str:
        """Median over rounds of a/b measured in the same round (less exposed to drift)."""
        runs = {**fixed_runs, **packed_runs}
        if a not in runs or b not in runs:
            return "nan"
        return f"{statistics.median(x / y for x, y in zip(runs[a], runs[b], strict=True)):.3f}"

    print(
        "per-round paired ratios (median): "
        f"kitchen/raw={paired('kitchen', 'torch+peft loop')} "
        f"kitchen/TRL={paired('kitchen', 'TRL SFTTrainer')} "
        f"packed/TRL packed={paired('kitchen packed', 'TRL packed')} "
        f"packed/padded={paired('kitchen packed', 'kitchen padded')}"
    )
    k_raw = med["kitchen"] / med["torch+peft loop"]
    k_trl = med["kitchen"] / med["TRL SFTTrainer"]
    p_trl = med["kitchen packed"] / med["TRL packed"] if packed_runs else float("nan")
    print(f"RESULT kitchen_vs_raw={k_raw:.3f} kitchen_vs_trl={k_trl:.3f} packed_vs_trl={p_trl:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""FSDP2 vs one process vs replicated data parallel: per-rank memory and step time.

    python benchmarks/fsdp.py              # ~3-5 min on 2 CPU cores; --quick for a smoke run

A full fine-tune (AdamW, every parameter trains) of a from-config Llama on CPU, three ways,
one after another in this run: 1 process; 2 ranks ``parallel=replicate``; 2 ranks
``parallel=fsdp`` (torchrun, gloo). Every configuration trains the same global batch.
Per rank it reports

- the model state it holds (parameters + AdamW moments, local shards only), measured;
- peak RSS above the process's RSS after its imports and process-group set-up
  (``ru_maxrss`` minus that baseline), so the fixed cost of Python, torch and transformers
  does not hide the model's share;
  every worker runs with ``MALLOC_MMAP_THRESHOLD_=131072`` so freed blocks leave RSS;
- the median step time (``forward_backward`` + ``optim_step``) after warm-up steps.

The table gives ratios: fsdp/1-process memory (the goal is <= 0.6) and fsdp/replicate step
time at 2 ranks. CPU figures say nothing about GPU speed (gloo over loopback, 1 thread per
rank); they show that sharding really divides the state.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

MODEL = {
    "model_type": "llama",
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "vocab_size": 2000,
    "max_position_embeddings": 256,
}
QUICK = {**MODEL, "hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 4}


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args: argparse.Namespace) -> None:
    import torch

    from kitchen.adapters.hf import distributed, fsdp
    from kitchen.adapters.hf.training import HfTrainingClient
    from kitchen.ports.types import AdamParams
    from kitchen.testing.datums import ce_datum, make_sequences

    torch.set_num_threads(1)
    # Baseline after everything but the model: imports (transformers' Llama code is
    # imported lazily at load) and the process group.
    import transformers.models.llama.modeling_llama  # noqa: F401

    dp = distributed.init_process_group("cpu")  # a no-op for one process
    baseline = _rss()
    spec = {"config": QUICK if args.quick else MODEL, "mode": "full", "parallel": args.parallel}
    with tempfile.TemporaryDirectory() as state:
        client = HfTrainingClient(spec, state_dir=state)
        client.load().result()
        vocab = int(spec["config"]["vocab_size"])  # type: ignore[index]
        batch = [ce_datum(s) for s in make_sequences(vocab, args.batch, args.seq_len, seed=1)]
        mine = batch[dp.rank :: dp.world_size]
        times = []
        for _ in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            client.forward_backward(mine, "cross_entropy").result()
            client.optim_step(AdamParams(learning_rate=1e-4, grad_clip_norm=1.0)).result()
            times.append(time.perf_counter() - t0)
        foot = client._worker.submit(
            lambda: fsdp.shard_footprint(client._ensure().model, client._optimizer)
        ).result()
        client.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {
        "rank": dp.rank,
        "world": dp.world_size,
        "parallel": args.parallel,
        "state_bytes": foot["param_bytes"] + foot["optimizer_bytes"],
        "peak_rss_above_baseline": peak - baseline,
        "step_s": statistics.median(times[args.warmup :]),
    }
    Path(args.out, f"{args.parallel}-w{dp.world_size}-r{dp.rank}.json").write_text(json.dumps(out))


def _launch(argv: list[str], world: int, out: str, port: int) -> None:
    # A fixed mmap threshold makes glibc return freed large blocks (FSDP's per-layer
    # all-gather buffers) to the OS; with its default sliding threshold RSS keeps memory
    # that torch has freed, and the peak measures the allocator, not the model.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    script = [str(Path(__file__).resolve()), "--worker", "--out", out, *argv]
    if world == 1:
        cmd = [sys.executable, *script]
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, "--nproc-per-node", str(world), "--master-port", str(port), *script]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--parallel", default="replicate", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 steps")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.quick:
        args.steps, args.warmup = 2, 1
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup),
              "--batch", str(args.batch), "--seq-len", str(args.seq_len)]  # fmt: skip
    common += ["--quick"] if args.quick else []
    with tempfile.TemporaryDirectory() as out:
        _launch([*common, "--parallel", "replicate"], 1, out, 29561)
        _launch([*common, "--parallel", "replicate"], 2, out, 29562)
        _launch([*common, "--parallel", "fsdp"], 2, out, 29563)
        rows = [json.loads(p.read_text()) for p in sorted(Path(out).glob("*.json"))]
    return report(rows, args)


def _row(rows: list[dict[str, Any]], parallel: str, world: int) -> dict[str, float]:
    mine = [r for r in rows if r["parallel"] == parallel and r["world"] == world]
    return {  # the worst rank: what has to fit on each device
        k: max(float(r[k]) for r in mine)
        for k in ("state_bytes", "peak_rss_above_baseline", "step_s")
    }


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> int:
    one = _row(rows, "replicate", 1)
    rep = _row(rows, "replicate", 2)
    fs = _row(rows, "fsdp", 2)
    cfg = QUICK if args.quick else MODEL
    print(f"full fine-tune of a from-config llama {cfg}; global batch {args.batch} x "
          f"{args.seq_len} tokens; median of {args.steps} steps after {args.warmup}")  # fmt: skip
    header = f"{'configuration':<22}{'state MiB/rank':>16}{'peak RSS MiB/rank':>19}{'step s':>9}"
    print(header)
    print("-" * len(header))
    for name, r in (("1 process", one), ("2 ranks replicate", rep), ("2 ranks fsdp", fs)):
        print(
            f"{name:<22}{r['state_bytes'] / 2**20:>16.1f}"
            f"{r['peak_rss_above_baseline'] / 2**20:>19.1f}{r['step_s']:>9.3f}"
        )
    ratios = {
        "fsdp_vs_1proc_state": fs["state_bytes"] / one["state_bytes"],
        "fsdp_vs_1proc_peak": fs["peak_rss_above_baseline"] / one["peak_rss_above_baseline"],
        "replicate_vs_1proc_peak": rep["peak_rss_above_baseline"] / one["peak_rss_above_baseline"],
        "fsdp_vs_replicate_step_time": fs["step_s"] / rep["step_s"],
    }
    print()
    for k, v in ratios.items():
        print(f"{k:<32}{v:>8.3f}")
    print("RESULT " + " ".join(f"{k}={v:.3f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of one background adapter training (examples/codebase_adapters) at a
realistic small-model shape, against the memory guard's per-job budget and the
pipeline's 4 GB ceiling.

    python benchmarks/codebase_adapters_memory.py [--shape small|tiny] [--steps N]

One job runs on the service's worker thread (as in production: `submit()` then `wait()`)
while the main thread samples this process's RSS every 50 ms; the job's cost is the peak
minus the RSS before it started (the interpreter with torch and transformers imported).
`small` is a ~110M-parameter Llama (GPT-2-small scale: 12 layers x 768, vocab 32k) with a
rank-8 LoRA, batch 8, 256-token rows; `tiny` is the example's default base model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    "small": {
        "model_type": "llama",
        "hidden_size": 768,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "num_key_value_heads": 12,
        "max_position_embeddings": 512,
        "vocab_size": 32000,
        "tie_word_embeddings": True,
    },
}
CEILING_MB = 4096


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", choices=("small", "tiny"), default="small")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    import torch  # noqa: F401  (imported before the baseline is taken)
    import transformers  # noqa: F401
    from examples.codebase_adapters.service import AdapterService

    from kitchen.recipes.defaults import TINY_HF_MODEL

    model = None
    if args.shape != "tiny":
        model = {"config": SHAPES[args.shape], "mode": "lora", "lora": {"rank": 8, "alpha": 16}}
    project = ROOT / "examples" / "codebase_adapters" / "projects"
    source = sorted(d for d in project.iterdir() if d.is_dir())[0]
    with tempfile.TemporaryDirectory(prefix="adapters-mem-") as tmp:
        svc = AdapterService(
            tmp, adapters="hf", epochs=args.epochs, batch_size=args.batch_size,
            max_length=256, model=model, memory_mb=0.0, reserve_mb=0.0,
        )  # fmt: skip
        base = rss_mb()
        peak = base
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_mb())
                time.sleep(0.05)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        t0 = time.perf_counter()
        svc.submit(source.name, source)
        result = svc.wait()
        seconds = time.perf_counter() - t0
        stop.set()
        t.join()
        svc.close()
    rec = result[source.name]
    shape = SHAPES.get(args.shape) or TINY_HF_MODEL["config"]
    print(f"project {source.name}: {rec.get('state')}, steps {rec.get('steps')}, "
          f"{seconds:.1f} s; model {shape}")  # fmt: skip
    print("| shape | batch | RSS before the job | peak RSS | job's peak cost | 4 GB ceiling used |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| {args.shape} | {args.batch_size} | {base:.0f} MB | {peak:.0f} MB | "
        f"{peak - base:.0f} MB | {peak / CEILING_MB:.0%} |"
    )
    return 0 if rec.get("state") == "done" else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""SFT steps/s through ``kitchen serve`` over loopback vs. the same backend in process.

One run measures three things on the same model, data and seed:

- ``local``: the backend's TrainingClient in this process, pipelined;
- ``remote pipelined``: tinker SDK → ``kitchen serve`` subprocess, step N+1 submitted
  before step N is awaited (the tinker-cookbook pattern);
- ``remote serial``: the same, awaiting every call before the next.

The last line is ``RESULT remote_vs_local=<ratio> pipelined_vs_serial=<ratio>``. Target:
remote_vs_local >= 0.8. Usage::

    python benchmarks/remote_pipelining.py [--backend hf|noop|module:factory]
        [--model-spec JSON] [--steps 20] [--batch 8] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TINKER_TELEMETRY", "0")

DEFAULT_HF_SPEC = {
    "config": {
        "model_type": "llama",
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "intermediate_size": 688,
        "vocab_size": 2048,
    },
    "mode": "lora",
    "lora": {"rank": 8},
}


def _default_backend() -> list[str]:
    try:
        from kitchen.adapters.hf.training import HfTrainingClient  # noqa: F401

        return [
            "--backend",
            "hf",
            "--model-spec",
            json.dumps(DEFAULT_HF_SPEC),
            "--model-name",
            "bench-llama",
        ]
    except ImportError:
        return [
            "--backend",
            "noop",
            "--model-spec",
            '{"vocab_size": 384}',
            "--model-name",
            "bench-noop",
        ]


def _batches(n: int, batch: int, seq_len: int, vocab: int, seed: int = 0) -> list[list[Any]]:
    from kitchen.ports.types import Datum, ModelInput

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        rows = []
        for _ in range(batch):
            toks = [rng.randrange(1, vocab) for _ in range(seq_len + 1)]
            rows.append(
                Datum(
                    ModelInput.from_ints(toks[:-1]),
                    {"target_tokens": toks[1:], "weights": [1.0] * seq_len},
                )
            )
        out.append(rows)
    return out


def _run(client: Any, batches: list[list[Any]], pipelined: bool) -> float:
    """Seconds for all steps. Pipelined keeps one step in flight while submitting the next."""
    from kitchen.ports.types import AdamParams

    adam = AdamParams(learning_rate=1e-3)
    start = time.perf_counter()
    prev: tuple[Any, Any] | None = None
    for data in batches:
        fb = client.forward_backward(data, "cross_entropy")
        opt = client.optim_step(adam)
        if pipelined:
            if prev is not None:
                prev[0].result()
                prev[1].result()
            prev = (fb, opt)
        else:
            fb.result()
            opt.result()
    if prev is not None:
        prev[0].result()
        prev[1].result()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default=None)
    ap.add_argument("--model-spec", default=None)
    ap.add_argument("--model-name", default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args(argv)

    backend_args = _default_backend()
    if args.backend:
        backend_args = ["--backend", args.backend]
        if args.model_spec:
            backend_args += ["--model-spec", args.model_spec]
        if args.model_name:
            backend_args += ["--model-name", args.model_name]
    opts = dict(zip(backend_args[::2], backend_args[1::2], strict=True))
    spec = json.loads(opts.get("--model-spec") or "{}")
    vocab = int(spec.get("vocab_size") or (spec.get("config") or {}).get("vocab_size") or 256)

    from rich.console import Console
    from rich.table import Table
    from tests.remote.server import Server

    from kitchen.adapters.remote import RemoteConfig, RemoteTrainingClient
    from kitchen.server.backends import load_backend

    backend = load_backend(
        opts["--backend"], model_spec=opts.get("--model-spec"), model_name=opts.get("--model-name")
    )
    model = backend.model_names()[0]
    total = args.warmup + args.steps
    batches = _batches(total, args.batch, args.seq_len, vocab)
    results: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        local = backend.create_training(
            base_model=model, lora_rank=8, seed=0, state_dir=Path(tmp) / "local"
        )
        _run(local, batches[: args.warmup], True)
        results["local (in-process, pipelined)"] = _run(local, batches[args.warmup :], True)
        del local

        with Server(Path(tmp) / "serve", backend_args) as srv:
            for mode, pipelined in (("pipelined", True), ("serial", False)):
                client = RemoteTrainingClient(
                    RemoteConfig(
                        base_url=srv.url, api_key=srv.token, base_model=model, lora_rank=8, seed=0
                    )
                )
                _run(client, batches[: args.warmup], pipelined)
                results[f"remote ({mode})"] = _run(client, batches[args.warmup :], pipelined)
                client.close()

    table = Table(
        title=f"SFT steps/s, {opts['--backend']} backend, model {model}, "
        f"batch {args.batch}x{args.seq_len}, {args.steps} steps"
    )
    table.add_column("mode")
    table.add_column("seconds", justify="right")
    table.add_column("steps/s", justify="right")
    table.add_column("ms/step", justify="right")
    for name, secs in results.items():
        table.add_row(
            name, f"{secs:.3f}", f"{args.steps / secs:.2f}", f"{1000 * secs / args.steps:.1f}"
        )
    Console().print(table)
    local_s = results["local (in-process, pipelined)"]
    pipe_s, serial_s = results["remote (pipelined)"], results["remote (serial)"]
    print(
        f"RESULT remote_vs_local={local_s / pipe_s:.3f} pipelined_vs_serial={serial_s / pipe_s:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

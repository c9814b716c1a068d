"""Resident memory of ``kitchen serve`` with 1 vs 4 concurrent LoRA sessions, each with a
sampler, and the samples/s of requests from all four sessions' samplers at once.

Starts the server twice on the same from-config Llama (hf backend): once with the base
model shared by every LoRA session and sampler (the default) and once with
``"share_base": false`` (every session and sampler its own copy, the behaviour before
multi-tenancy). For each it opens one SDK session (LoRA client, one forward_backward +
optim_step, ``save_weights_and_get_sampling_client`` and one sample), reads the server's
RSS, opens three more sessions doing the same, reads RSS again. Then every session's
sampler sends ``--requests`` requests at once (``--tokens`` tokens each) and the wall time
gives samples/s (on a shared base they decode in one mixed-adapter batch). Prints tables
and::

    RESULT shared_4_vs_1=<ratio> unshared_4_vs_1=<ratio> shared_vs_unshared_samples_per_s=<ratio>

Target: shared_4_vs_1 <= 1.25. Usage::

    python benchmarks/serve_multitenant_memory.py [--hidden 768] [--layers 12]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TINKER_TELEMETRY", "0")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def session(url: str, token: str, model: str, seed: int) -> tuple[Any, Any, Any]:
    import tinker
    from tinker import types

    sc = tinker.ServiceClient(base_url=url, api_key=token)
    tc = sc.create_lora_training_client(base_model=model, rank=8, seed=seed).result(600)
    toks = [(seed * 7 + i) % 1000 + 10 for i in range(65)]
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(toks[:-1]),
        loss_fn_inputs={"target_tokens": toks[1:], "weights": [1.0] * 64},
    )
    tc.forward_backward([datum] * 4, "cross_entropy").result(600)
    tc.optim_step(types.AdamParams(learning_rate=1e-4)).result(600)
    sampler = tc.save_weights_and_get_sampling_client(f"s{seed}")
    sampler = sampler.result(600) if hasattr(sampler, "result") else sampler
    prompt = types.ModelInput.from_ints(toks[:8])
    sampler.sample(prompt, 1, types.SamplingParams(max_tokens=4, seed=seed)).result(600)
    return sc, tc, sampler


def burst(samplers: list[Any], requests: int, tokens: int) -> float:
    """Samples/s of ``requests`` requests per sampler, all in flight at once."""
    from tinker import types

    def one(args: tuple[Any, int]) -> int:
        sampler, k = args
        prompt = types.ModelInput.from_ints([(k * 13 + i) % 500 + 10 for i in range(8 + k % 5)])
        params = types.SamplingParams(max_tokens=tokens, seed=k, temperature=1.0)
        return len(sampler.sample(prompt, 1, params).result(600).sequences)

    jobs = [(s, i * requests + k) for i, s in enumerate(samplers) for k in range(requests)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        t0 = time.perf_counter()
        done = sum(pool.map(one, jobs))
        return done / (time.perf_counter() - t0)


def measure(
    spec: dict[str, Any], share: bool, requests: int, tokens: int
) -> tuple[float, float, float, float]:
    from tests.remote.server import TOKEN, Server

    name = "bench-mt"
    spec = {**spec, "share_base": share}
    args = ["--backend", "hf", "--model-spec", json.dumps(spec), "--model-name", name]
    with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp) / "data", args=args) as srv:
        assert srv.proc is not None
        pid = srv.proc.pid
        idle = rss_mb(pid)
        held = [session(srv.url, TOKEN, name, 1)]
        time.sleep(1)
        one = rss_mb(pid)
        held += [session(srv.url, TOKEN, name, s) for s in (2, 3, 4)]
        time.sleep(1)
        four = rss_mb(pid)
        samplers = [h[2] for h in held]
        burst(samplers, 1, 2)  # warm-up
        rate = burst(samplers, requests, tokens)
        for sc, _, _ in held:
            sc.close("success").result(60)
    return idle, one, four, rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--requests", type=int, default=8, help="concurrent requests per sampler")
    ap.add_argument("--tokens", type=int, default=16, help="tokens per request")
    a = ap.parse_args()
    spec = {
        "config": {
            "model_type": "llama",
            "hidden_size": a.hidden,
            "num_hidden_layers": a.layers,
            "num_attention_heads": 12,
            "num_key_value_heads": 4,
            "intermediate_size": a.hidden * 8 // 3,
            "vocab_size": a.vocab,
        },
        "mode": "lora",
        "lora": {"rank": 8},
    }
    rows = {}
    for share in (True, False):
        rows[share] = measure(spec, share, a.requests, a.tokens)
    print(
        "| mode | idle RSS MB | 1 session + sampler MB | 4 sessions + samplers MB | 4 / 1 "
        f"| samples/s, 4 samplers x {a.requests} requests x {a.tokens} tokens |"
    )
    print("|---|---|---|---|---|---|")
    for share, (idle, one, four, rate) in rows.items():
        label = "shared base" if share else "own copy each"
        print(f"| {label} | {idle:.0f} | {one:.0f} | {four:.0f} | {four / one:.3f} | {rate:.1f} |")
    s, u = rows[True], rows[False]
    print(
        f"RESULT shared_4_vs_1={s[2] / s[1]:.3f} unshared_4_vs_1={u[2] / u[1]:.3f} "
        f"shared_vs_unshared_samples_per_s={s[3] / u[3]:.2f}"
    )


if __name__ == "__main__":
    main()

"""Samples/s of concurrent sampling requests: one padded batch vs one request at a time.

16 requests (different prompts and seeds) x 4 samples x 32 tokens, all submitted at once
(what one RL step sends: a request per prompt), against the same CPU model:

- ``one at a time``: :class:`HfSamplingClient` (each request decoded alone, in turn);
- ``batched``: :class:`BatchedHfSamplingClient` (the requests decoded together).

Both run in this process, side by side, after a warm-up; the best of ``--repeats`` is
kept. Prints a table and ``RESULT batched_vs_one_at_a_time=<ratio>`` (target >= 3).
Usage::

    python benchmarks/batched_sampling.py [--requests 16] [--samples 4] [--tokens 32]
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def model(hidden: int, layers: int, vocab: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        vocab_size=vocab,
    )
    return LlamaForCausalLM(cfg).eval()


def run(client: Any, requests: int, samples: int, tokens: int) -> float:
    from kitchen.ports.types import ModelInput, SamplingParams

    t = time.perf_counter()
    futs = [
        client.sample(
            ModelInput.from_ints([(7 * i + j) % 1000 + 3 for j in range(8 + i % 5)]),
            samples,
            SamplingParams(max_tokens=tokens, seed=i, temperature=1.0),
        )
        for i in range(requests)
    ]
    for f in futs:
        resp = f.result(600)
        assert all(len(s.tokens) == tokens for s in resp.sequences)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import torch

    from kitchen.adapters.hf.batched_sampling import BatchedHfSamplingClient
    from kitchen.adapters.hf.sampling import HfSamplingClient

    torch.set_grad_enabled(False)
    m = model(a.hidden, a.layers, a.vocab)
    clients = {
        "one at a time": HfSamplingClient(m, eos_token_ids=()),
        "batched": BatchedHfSamplingClient(m, eos_token_ids=()),
    }
    best: dict[str, float] = {}
    for c in clients.values():
        run(c, 2, a.samples, 4)  # warm-up
    for _ in range(a.repeats):
        for name, c in clients.items():
            dt = run(c, a.requests, a.samples, a.tokens)
            best[name] = min(best.get(name, dt), dt)
    n = a.requests * a.samples
    print(
        f"{a.requests} requests x {a.samples} samples x {a.tokens} tokens, "
        f"{a.hidden}-wide {a.layers}-layer Llama, vocab {a.vocab}, CPU"
    )
    print("| sampler | seconds | samples/s |")
    print("|---|---|---|")
    for name, dt in best.items():
        print(f"| {name} | {dt:.3f} | {n / dt:.1f} |")
    print(f"RESULT batched_vs_one_at_a_time={best['one at a time'] / best['batched']:.2f}")


if __name__ == "__main__":
    main()

"""Samplers on a shared base (``kitchen serve --backend hf``): every session's sampler is an
adapter on the one base, and concurrent requests of several sessions' samplers and the base
decode in one mixed-adapter batch, each getting exactly the tokens it gets alone."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch

from kitchen.adapters.hf.adapter_sampling import SharedAdapterSamplingClient
from kitchen.adapters.hf.sampling import HfSamplingClient
from kitchen.ports.types import AdamParams, ModelInput, SamplingParams
from kitchen.server.backends import HfBackend
from tests.hf.conftest import TINY, ce_datum, sequences

pytestmark = pytest.mark.hf
T = 120
NAME = "tiny"
SPEC = {"config": dict(TINY), "mode": "lora", "lora": {"rank": 4, "alpha": 8}}
ADAM = AdamParams(learning_rate=0.05)

# (prompt, num_samples, params): lengths, seeds and stops differ, so rows pad differently.
REQUESTS = [
    ([5, 6, 7], 2, SamplingParams(max_tokens=7, seed=1, temperature=1.0)),
    ([9, 10, 11, 12, 13], 1, SamplingParams(max_tokens=5, seed=2, top_k=5)),
    ([20], 1, SamplingParams(max_tokens=6, temperature=0.0)),
    ([30, 31], 2, SamplingParams(max_tokens=6, seed=4, top_p=0.8, stop=[40, 41])),
]


def _train(client: Any, seed: int, steps: int = 2) -> None:
    for k in range(steps):
        data = [ce_datum(s) for s in sequences(2, 6, seed=seed * 10 + k)]
        client.forward_backward(data, "cross_entropy")
        client.optim_step(ADAM)


def _sessions(tmp_path: Path) -> tuple[HfBackend, dict[int, Any], dict[str, Any]]:
    """Two trained sessions on one backend, a sampler of each, and the base sampler."""
    backend = HfBackend(dict(SPEC), NAME)
    clients = {
        s: backend.create_training(
            base_model=NAME, lora_rank=4, seed=s, state_dir=tmp_path / f"{s}"
        )
        for s in (1, 2)
    }
    for s, c in clients.items():
        _train(c, s)
    samplers: dict[str, Any] = {
        f"s{s}": c.save_weights_and_get_sampling_client(f"s{s}") for s, c in clients.items()
    }
    samplers["base"] = backend.sampling_for_base(NAME, tmp_path / "base")
    return backend, clients, samplers


def _tokens(resp: Any) -> list[tuple[int, ...]]:
    return [s.tokens for s in resp.sequences]


def test_samplers_are_adapters_on_the_base_and_mixed_batches_match_alone(
    tmp_path: Path,
) -> None:
    backend, clients, samplers = _sessions(tmp_path)
    shared = backend.shared_base(backend._spec(4, 1))
    assert all(isinstance(s, SharedAdapterSamplingClient) for s in samplers.values())
    # No model copy: every sampler and every session sees the one shared model object.
    models = {id(s.model) for s in samplers.values()} | {id(c.model) for c in clients.values()}
    assert len(models) == 1
    assert len(shared.worker.submit(lambda: shared.samplers).result(T)) == 2
    assert len(shared.worker.submit(lambda: shared.tenants).result(T)) == 2

    alone = {
        (who, i): _tokens(s.sample(ModelInput.from_ints(p), n, sp).result(T))
        for who, s in samplers.items()
        for i, (p, n, sp) in enumerate(REQUESTS)
    }
    # The adapters really differ (else the mixed batch would prove nothing).
    logps = {
        who: s.compute_logprobs(ModelInput.from_ints([3, 4, 5, 6])).result(T)[1:]
        for who, s in samplers.items()
    }
    assert logps["s1"] != logps["s2"] != logps["base"] != logps["s1"]

    # Hold the worker so every request queues, then release: they decode as one batch.
    gate = threading.Event()
    shared.worker.submit(gate.wait, T)
    batches_before = shared.batcher.batches
    futures = {
        (who, i): s.sample(ModelInput.from_ints(p), n, sp)
        for i, (p, n, sp) in enumerate(REQUESTS)
        for who, s in samplers.items()
    }
    gate.set()
    together = {k: _tokens(f.result(T)) for k, f in futures.items()}
    assert shared.batcher.batches == batches_before + 1  # one mixed batch of 3 adapters
    assert shared.batcher.last_adapters == {
        "__base__",
        *(samplers[w].adapter for w in ("s1", "s2")),
    }
    assert together == alone

    # A snapshot is frozen: training on after it leaves the sampler's tokens unchanged.
    _train(clients[1], 7, steps=1)
    p, n, sp = REQUESTS[0]
    assert (
        _tokens(samplers["s1"].sample(ModelInput.from_ints(p), n, sp).result(T)) == alone[("s1", 0)]
    )
    for s in samplers.values():
        s.close()
    assert shared.worker.submit(lambda: shared.samplers).result(T) == []
    with pytest.raises(RuntimeError, match="closed"):
        samplers["s1"].sample(ModelInput.from_ints([1, 2]), 1, SamplingParams(max_tokens=2))
    for c in clients.values():
        c.close()


def test_shared_sampler_matches_a_standalone_model_of_the_saved_weights(tmp_path: Path) -> None:
    backend = HfBackend(dict(SPEC), NAME)
    client = backend.create_training(base_model=NAME, lora_rank=4, seed=3, state_dir=tmp_path)
    _train(client, 3)
    rng = torch.random.get_rng_state()
    live = client.save_weights_and_get_sampling_client("live")
    assert live.adapter.startswith("sampler")  # waits for the snapshot on the worker
    assert torch.equal(torch.random.get_rng_state(), rng)  # a snapshot draws no randomness
    saved = client.save_weights_for_sampler("w").result(T).path
    alone = HfSamplingClient.from_weights(saved)
    prompt = ModelInput.from_ints([3, 4, 5, 6])
    assert live.compute_logprobs(prompt).result(T)[1:] == pytest.approx(
        alone.compute_logprobs(prompt).result(T)[1:], abs=1e-5
    )
    top_live = live.topk_prompt_logprobs(prompt, 3).result(T)[1]
    top_alone = alone.topk_prompt_logprobs(prompt, 3).result(T)[1]
    assert [t for t, _ in top_live] == [t for t, _ in top_alone]
    for p, n, sp in REQUESTS:
        resp = live.sample(ModelInput.from_ints(p), n, sp, include_prompt_logprobs=True).result(T)
        ref = alone.sample(ModelInput.from_ints(p), n, sp, include_prompt_logprobs=True).result(T)
        assert _tokens(resp) == _tokens(ref)
        assert resp.sequences[0].logprobs == pytest.approx(ref.sequences[0].logprobs, abs=1e-4)
    # The base model's sampler is the shared model too ("__base__" rows), not a copy.
    base = backend.sampling_for_base(NAME, tmp_path / "b")
    assert base.model is live.model
    alone.close()
    live.close()
    client.close()

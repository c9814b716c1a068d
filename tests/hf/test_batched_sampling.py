"""Batched sampling: concurrent requests decode together, each with its own seed, params
and stops, and get exactly the tokens they get alone."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from kitchen.adapters.hf.batched_sampling import BatchedHfSamplingClient
from kitchen.adapters.hf.sampling import HfSamplingClient
from kitchen.ports.types import ModelInput, SamplingParams

pytestmark = pytest.mark.hf
T = 120

REQUESTS = [
    ([5, 6, 7], 3, SamplingParams(max_tokens=9, seed=1, temperature=1.0)),
    ([9, 10, 11, 12, 13, 14, 15], 2, SamplingParams(max_tokens=5, seed=2, temperature=0.7)),
    ([20], 1, SamplingParams(max_tokens=12, seed=3, top_k=5)),
    ([30, 31], 2, SamplingParams(max_tokens=8, seed=4, top_p=0.8, stop=[40, 41, 42])),
    ([50, 51, 52, 53], 1, SamplingParams(max_tokens=6, temperature=0.0)),
    ([60, 61, 62], 4, SamplingParams(max_tokens=0, seed=5)),
]


@pytest.fixture
def model(make_client: Any) -> Any:
    client = make_client("lora")
    client.optim_step  # noqa: B018 - the untrained adapter is fine: B=0 is the base model
    return client.save_weights_and_get_sampling_client("m").model


def _tokens(resp: Any) -> list[tuple[int, ...]]:
    return [s.tokens for s in resp.sequences]


def test_concurrent_requests_decode_together_and_match_alone(model: Any) -> None:
    calls = {"n": 0}
    handle = model.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    try:
        batched = BatchedHfSamplingClient(model, eos_token_ids=(), window_s=0.05)
        alone = []
        for prompt, n, p in REQUESTS:
            alone.append(batched.sample(ModelInput.from_ints(prompt), n, p).result(T))
        calls_alone, calls["n"] = calls["n"], 0
        futs = [batched.sample(ModelInput.from_ints(pr), n, p) for pr, n, p in REQUESTS]
        together = [f.result(T) for f in futs]
        calls_together = calls["n"]
    finally:
        handle.remove()
    for a, b, (_, n, p) in zip(alone, together, REQUESTS, strict=True):
        assert _tokens(a) == _tokens(b)
        assert len(b.sequences) == n
        for s in b.sequences:
            assert len(s.tokens) <= (p.max_tokens or 0)
            assert s.logprobs is not None and len(s.logprobs) == len(s.tokens)
        for sa, sb in zip(a.sequences, b.sequences, strict=True):
            assert sb.logprobs == pytest.approx(sa.logprobs, abs=1e-4)
            assert sa.stop_reason == sb.stop_reason
    # One padded batch: one forward per decoding step of the longest request, not per request.
    assert calls_together <= 1 + max(p.max_tokens or 0 for *_, p in REQUESTS)
    assert calls_together < calls_alone / 2
    # The stop ids ended sequences where they appeared.
    for s in together[3].sequences:
        if s.stop_reason == "stop":
            assert s.tokens[-1] in (40, 41, 42)


def test_batched_equals_the_one_request_sampler_and_model_logprobs(model: Any) -> None:
    plain = HfSamplingClient(model, eos_token_ids=())
    batched = BatchedHfSamplingClient(model, eos_token_ids=(), window_s=0.02)
    futs = [batched.sample(ModelInput.from_ints(pr), n, p) for pr, n, p in REQUESTS]
    for (pr, n, p), f in zip(REQUESTS, futs, strict=True):
        got = f.result(T)
        want = plain.sample(ModelInput.from_ints(pr), n, p).result(T)
        assert _tokens(got) == _tokens(want)
        for s in got.sequences:
            if not s.tokens:
                continue
            full = plain.compute_logprobs(ModelInput.from_ints([*pr, *s.tokens])).result(T)
            assert list(s.logprobs or ()) == pytest.approx(full[len(pr) :], abs=1e-4)
    # Prompt logprobs come back per request, unpadded.
    resp = batched.sample(
        ModelInput.from_ints([3, 4, 5, 6]), 1, SamplingParams(max_tokens=1, seed=0), True
    ).result(T)
    ref = plain.compute_logprobs(ModelInput.from_ints([3, 4, 5, 6])).result(T)
    assert resp.prompt_logprobs is not None and resp.prompt_logprobs[0] is None
    assert list(resp.prompt_logprobs[1:]) == pytest.approx(ref[1:], abs=1e-4)


def test_bad_requests_fail_in_the_caller_and_leave_the_batcher_working(model: Any) -> None:
    batched = BatchedHfSamplingClient(model, eos_token_ids=())
    with pytest.raises(ValueError, match="num_samples"):
        batched.sample(ModelInput.from_ints([1, 2]), 0, SamplingParams(max_tokens=2))
    with pytest.raises(ValueError, match="string stop"):
        batched.sample(ModelInput.from_ints([1, 2]), 1, SamplingParams(max_tokens=2, stop="x"))
    ok = batched.sample(ModelInput.from_ints([1, 2]), 2, SamplingParams(max_tokens=3, seed=1))
    assert len(ok.result(T).sequences) == 2

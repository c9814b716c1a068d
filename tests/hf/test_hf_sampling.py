"""HfSamplingClient: seeding, logprobs, greedy agreement with compute_logprobs, stops."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from kitchen.ports import ModelInput, SamplingClient, SamplingParams
from tests.hf.conftest import VOCAB, sequences

pytestmark = pytest.mark.hf

TIMEOUT = 120
PROMPT = ModelInput.from_ints(sequences(1, 5, seed=42)[0])


@pytest.fixture(scope="module")
def sampler() -> Any:
    """A sampling client over a tiny model with EOS disabled (so lengths are predictable)."""
    from kitchen.adapters.hf.model_spec import load_model
    from kitchen.adapters.hf.sampling import HfSamplingClient
    from tests.hf.conftest import tiny_spec

    lm = load_model(tiny_spec("full"))
    client = HfSamplingClient(lm.model, eos_token_ids=())
    yield client
    client.close()


def test_is_a_sampling_client(sampler: Any) -> None:
    assert isinstance(sampler, SamplingClient)


def test_same_seed_same_tokens_other_seed_differs(sampler: Any) -> None:
    p = SamplingParams(max_tokens=10, seed=7)
    a = sampler.sample(PROMPT, 3, p).result(TIMEOUT)
    b = sampler.sample(PROMPT, 3, p).result(TIMEOUT)
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
    assert [s.logprobs for s in a.sequences] == [s.logprobs for s in b.sequences]
    c = sampler.sample(PROMPT, 3, SamplingParams(max_tokens=10, seed=8)).result(TIMEOUT)
    assert [s.tokens for s in a.sequences] != [s.tokens for s in c.sequences]
    # The rows of one call are independent draws, not copies.
    assert len({s.tokens for s in a.sequences}) > 1


def test_lengths_and_stop_reason(sampler: Any) -> None:
    out = sampler.sample(PROMPT, 2, SamplingParams(max_tokens=6, seed=1)).result(TIMEOUT)
    assert len(out.sequences) == 2
    for s in out.sequences:
        assert len(s.tokens) == 6 and s.logprobs is not None and len(s.logprobs) == 6
        assert s.stop_reason == "length"
        assert all(0 <= t < VOCAB for t in s.tokens)
        assert all(lp <= 0 for lp in s.logprobs)
    assert out.prompt_logprobs is None


def test_greedy_logprobs_match_compute_logprobs(sampler: Any) -> None:
    greedy = SamplingParams(max_tokens=8, temperature=0.0, seed=1)
    out = sampler.sample(PROMPT, 1, greedy, include_prompt_logprobs=True).result(TIMEOUT)
    seq = out.sequences[0]
    full = PROMPT.to_ints() + list(seq.tokens)
    scored = sampler.compute_logprobs(ModelInput.from_ints(full)).result(TIMEOUT)
    assert len(scored) == len(full) and scored[0] is None
    assert list(seq.logprobs) == pytest.approx(scored[PROMPT.length :], abs=1e-4)
    prompt_lp = sampler.compute_logprobs(PROMPT).result(TIMEOUT)
    assert out.prompt_logprobs is not None and out.prompt_logprobs[0] is None
    assert list(out.prompt_logprobs[1:]) == pytest.approx(prompt_lp[1:], abs=1e-5)
    # Greedy ignores the seed; top_k=1 is greedy too.
    other = sampler.sample(PROMPT, 1, SamplingParams(max_tokens=8, temperature=0.0, seed=99))
    assert other.result(TIMEOUT).sequences[0].tokens == seq.tokens
    topk1 = sampler.sample(PROMPT, 1, SamplingParams(max_tokens=8, top_k=1, seed=3))
    assert topk1.result(TIMEOUT).sequences[0].tokens == seq.tokens


def test_sampled_logprobs_are_model_logprobs(sampler: Any) -> None:
    """At any temperature the reported logprobs are the model's own (what training sees)."""
    p = SamplingParams(max_tokens=6, temperature=1.5, top_p=0.9, top_k=20, seed=5)
    seq = sampler.sample(PROMPT, 1, p).result(TIMEOUT).sequences[0]
    full = PROMPT.to_ints() + list(seq.tokens)
    scored = sampler.compute_logprobs(ModelInput.from_ints(full)).result(TIMEOUT)
    assert list(seq.logprobs) == pytest.approx(scored[PROMPT.length :], abs=1e-4)


def test_stop_token_ends_sequence(sampler: Any) -> None:
    greedy = sampler.sample(PROMPT, 1, SamplingParams(max_tokens=8, temperature=0.0))
    toks = greedy.result(TIMEOUT).sequences[0].tokens
    stop_at = toks[2]
    cut = toks.index(stop_at)
    p = SamplingParams(max_tokens=8, temperature=0.0, stop=[stop_at])
    seq = sampler.sample(PROMPT, 1, p).result(TIMEOUT).sequences[0]
    assert seq.tokens == toks[: cut + 1]
    assert seq.stop_reason == "stop"
    assert seq.logprobs is not None and len(seq.logprobs) == len(seq.tokens)


def test_eos_from_model_config_stops() -> None:
    from kitchen.adapters.hf.model_spec import load_model
    from kitchen.adapters.hf.sampling import HfSamplingClient
    from tests.hf.conftest import tiny_spec

    lm = load_model(tiny_spec("full"))
    probe = HfSamplingClient(lm.model, eos_token_ids=())
    toks = probe.sample(PROMPT, 1, SamplingParams(max_tokens=8, temperature=0.0)).result(TIMEOUT)
    first = toks.sequences[0].tokens[0]
    lm.model.generation_config.eos_token_id = first
    client = HfSamplingClient(lm.model)
    seq = client.sample(PROMPT, 1, SamplingParams(max_tokens=8, temperature=0.0)).result(TIMEOUT)
    assert seq.sequences[0].tokens == (first,) and seq.sequences[0].stop_reason == "stop"


def test_string_stop_needs_tokenizer(sampler: Any) -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        sampler.sample(PROMPT, 1, SamplingParams(max_tokens=4, stop="\n"))


def test_string_stop_with_tokenizer() -> None:
    from kitchen.adapters.hf.model_spec import load_model
    from kitchen.adapters.hf.sampling import HfSamplingClient
    from tests.hf.conftest import tiny_spec

    class Letters:
        def decode(self, ids: list[int]) -> str:
            return "".join(chr(97 + i % 26) for i in ids)

    lm = load_model(tiny_spec("full"))
    client = HfSamplingClient(lm.model, eos_token_ids=(), tokenizer=Letters())
    base = client.sample(PROMPT, 1, SamplingParams(max_tokens=8, temperature=0.0)).result(TIMEOUT)
    toks = base.sequences[0].tokens
    target = Letters().decode([toks[3]])
    cut = next(i for i, t in enumerate(toks) if Letters().decode([t]) == target)
    p = SamplingParams(max_tokens=8, temperature=0.0, stop=[target])
    seq = client.sample(PROMPT, 1, p).result(TIMEOUT).sequences[0]
    assert seq.tokens == toks[: cut + 1] and seq.stop_reason == "stop"


def test_unseeded_calls_are_reproducible_per_client(sampler: Any) -> None:
    from kitchen.adapters.hf.sampling import HfSamplingClient

    model = sampler.model
    a = HfSamplingClient(model, eos_token_ids=(), seed=3)
    b = HfSamplingClient(model, eos_token_ids=(), seed=3)
    p = SamplingParams(max_tokens=5)
    ra = [a.sample(PROMPT, 2, p).result(TIMEOUT) for _ in range(2)]
    rb = [b.sample(PROMPT, 2, p).result(TIMEOUT) for _ in range(2)]
    assert [r.sequences for r in ra] == [r.sequences for r in rb]
    assert ra[0].sequences != ra[1].sequences


def test_bad_arguments(sampler: Any) -> None:
    with pytest.raises(ValueError):
        sampler.sample(PROMPT, 0, SamplingParams(max_tokens=2))
    with pytest.raises(ValueError):
        sampler.sample(ModelInput.empty(), 1, SamplingParams(max_tokens=2))
    with pytest.raises(ValueError):
        sampler.sample(PROMPT, 1, SamplingParams(max_tokens=2, top_p=0.0))
    with pytest.raises(ValueError):
        sampler.compute_logprobs(ModelInput.empty())
    zero = sampler.sample(PROMPT, 1, SamplingParams(max_tokens=0)).result(TIMEOUT)
    assert zero.sequences[0].tokens == ()

"""Contract tests for :class:`kitchen.ports.SamplingClient`.

Abstract fixtures: ``sampling_client`` (a SamplingClient) and ``vocab_size``.
Optional: ``prompt_tokens`` (a short prompt of valid ids), ``logprob_atol``,
``result_timeout``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from kitchen.ports import ModelInput, SampleResponse, SamplingClient, SamplingParams


class SamplingClientContract:
    """Behaviour every SamplingClient must have."""

    @pytest.fixture
    def sampling_client(self, tmp_path: Any) -> SamplingClient:
        raise NotImplementedError("the concrete suite must provide `sampling_client`")

    @pytest.fixture
    def vocab_size(self) -> int:
        raise NotImplementedError("the concrete suite must provide `vocab_size`")

    @pytest.fixture
    def prompt_tokens(self, vocab_size: int) -> list[int]:
        return [(7 * i + 5) % vocab_size for i in range(1, 7)]

    @pytest.fixture
    def logprob_atol(self) -> float:
        return 1e-4

    @pytest.fixture
    def result_timeout(self) -> float:
        return 120.0

    def _sample(
        self,
        client: SamplingClient,
        prompt: list[int],
        n: int,
        params: SamplingParams,
        timeout: float,
        include_prompt_logprobs: bool = False,
    ) -> SampleResponse:
        fut = client.sample(ModelInput.from_ints(prompt), n, params, include_prompt_logprobs)
        assert hasattr(fut, "result") and hasattr(fut, "done")
        resp = fut.result(timeout=timeout)
        assert isinstance(resp, SampleResponse)
        return resp

    def test_same_seed_same_samples(
        self, sampling_client: SamplingClient, prompt_tokens: list[int], result_timeout: float
    ) -> None:
        params = SamplingParams(max_tokens=8, seed=1234)
        a = self._sample(sampling_client, prompt_tokens, 3, params, result_timeout)
        b = self._sample(sampling_client, prompt_tokens, 3, params, result_timeout)
        assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
        assert [s.logprobs for s in a.sequences] == [s.logprobs for s in b.sequences]

    @pytest.mark.parametrize("n", [1, 4])
    def test_num_samples_and_per_token_logprobs(
        self,
        sampling_client: SamplingClient,
        prompt_tokens: list[int],
        vocab_size: int,
        n: int,
        result_timeout: float,
    ) -> None:
        params = SamplingParams(max_tokens=6, seed=3)
        resp = self._sample(sampling_client, prompt_tokens, n, params, result_timeout)
        assert len(resp.sequences) == n
        for seq in resp.sequences:
            assert seq.stop_reason in ("length", "stop")
            assert all(0 <= t < vocab_size for t in seq.tokens)
            assert seq.logprobs is not None
            assert len(seq.logprobs) == len(seq.tokens)
            assert all(math.isfinite(x) and x <= 1e-6 for x in seq.logprobs)
            if len(seq.tokens) < 6:
                assert seq.stop_reason == "stop"

    @pytest.mark.parametrize("max_tokens", [1, 5])
    def test_max_tokens_respected(
        self,
        sampling_client: SamplingClient,
        prompt_tokens: list[int],
        max_tokens: int,
        result_timeout: float,
    ) -> None:
        params = SamplingParams(max_tokens=max_tokens, seed=5)
        resp = self._sample(sampling_client, prompt_tokens, 3, params, result_timeout)
        for seq in resp.sequences:
            assert 1 <= len(seq.tokens) <= max_tokens or seq.stop_reason == "stop"
            assert len(seq.tokens) <= max_tokens

    def test_greedy_ignores_seed(
        self, sampling_client: SamplingClient, prompt_tokens: list[int], result_timeout: float
    ) -> None:
        a = self._sample(
            sampling_client,
            prompt_tokens,
            1,
            SamplingParams(max_tokens=6, seed=1, temperature=0.0),
            result_timeout,
        )
        b = self._sample(
            sampling_client,
            prompt_tokens,
            1,
            SamplingParams(max_tokens=6, seed=2, temperature=0.0),
            result_timeout,
        )
        assert a.sequences[0].tokens == b.sequences[0].tokens

    def test_compute_logprobs(
        self, sampling_client: SamplingClient, prompt_tokens: list[int], result_timeout: float
    ) -> None:
        fut = sampling_client.compute_logprobs(ModelInput.from_ints(prompt_tokens))
        assert hasattr(fut, "result") and hasattr(fut, "done")
        lps = fut.result(timeout=result_timeout)
        assert len(lps) == len(prompt_tokens)
        assert lps[0] is None
        for x in lps[1:]:
            assert isinstance(x, float)
            assert math.isfinite(x) and x <= 1e-6

    def test_include_prompt_logprobs(
        self,
        sampling_client: SamplingClient,
        prompt_tokens: list[int],
        logprob_atol: float,
        result_timeout: float,
    ) -> None:
        params = SamplingParams(max_tokens=2, seed=0)
        resp = self._sample(
            sampling_client, prompt_tokens, 1, params, result_timeout, include_prompt_logprobs=True
        )
        assert resp.prompt_logprobs is not None
        assert len(resp.prompt_logprobs) == len(prompt_tokens)
        assert resp.prompt_logprobs[0] is None
        ref = sampling_client.compute_logprobs(ModelInput.from_ints(prompt_tokens)).result(
            timeout=result_timeout
        )
        for got, want in zip(resp.prompt_logprobs[1:], ref[1:], strict=True):
            assert got is not None and want is not None
            assert abs(got - want) <= logprob_atol

    @pytest.mark.parametrize("temperature", [0.6, 1.7])
    def test_sampled_logprobs_are_the_models_own(
        self,
        sampling_client: SamplingClient,
        prompt_tokens: list[int],
        logprob_atol: float,
        result_timeout: float,
        temperature: float,
    ) -> None:
        """At any temperature, a sampled token's logprob is the model's (untempered) one,
        as Tinker returns it: ``compute_logprobs`` of prompt + continuation agrees."""
        params = SamplingParams(max_tokens=6, seed=99, temperature=temperature)
        resp = self._sample(sampling_client, prompt_tokens, 1, params, result_timeout)
        seq = resp.sequences[0]
        assert seq.logprobs is not None and seq.tokens
        full = sampling_client.compute_logprobs(
            ModelInput.from_ints([*prompt_tokens, *seq.tokens])
        ).result(timeout=result_timeout)
        want = full[len(prompt_tokens) :]
        for got, ref in zip(seq.logprobs, want, strict=True):
            assert ref is not None
            assert abs(got - ref) <= logprob_atol, (seq.logprobs, want)

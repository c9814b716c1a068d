"""The sampling (completion) port."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from kitchen.ports.futures import Future
from kitchen.ports.types import ModelInput, SampleResponse, SamplingParams


@runtime_checkable
class SamplingClient(Protocol):
    """Generates from, and scores with, a fixed set of weights."""

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> Future[SampleResponse]:
        """Draw ``num_samples`` continuations of ``prompt``; same seed, same result."""
        ...

    def compute_logprobs(self, prompt: ModelInput) -> Future[list[float | None]]:
        """Logprob of each prompt token given its prefix; ``None`` for the first token."""
        ...

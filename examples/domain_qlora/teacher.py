"""A stand-in teacher, used when no model adapter is installed.

:class:`ExtractiveTeacher` implements the ``SamplingClient`` port without any model: it
answers from the first docstring in the prompt, decoding and encoding through any
``TokenizerClient`` (the pipeline uses the byte-level ``NoopTokenizer``). It keeps the
example runnable in seconds on any machine; pass a real ``SamplingClient``
(``ports.extra["teacher"]``: an hf model, a ``kitchen serve`` endpoint, Tinker) to generate
real synthetic answers - the pipeline does not change.
"""

from __future__ import annotations

import re

from kitchen.ports.futures import KFuture, resolved
from kitchen.ports.tokenizer import TokenizerClient
from kitchen.ports.types import ModelInput, SampledSequence, SampleResponse, SamplingParams


class ExtractiveTeacher:
    """A deterministic SamplingClient answering from the prompt's first docstring."""

    model_name = "extractive-teacher-v1"

    def __init__(self, tokenizer: TokenizerClient) -> None:
        self.tok = tokenizer

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> KFuture[SampleResponse]:
        text = self.tok.decode(prompt.to_ints())
        name = re.search(r"def (\w+)\(", text)
        doc = re.search(r'"""(.+?)"""', text, re.S)
        if name and doc:
            answer = (
                f"`{name.group(1)}` {doc.group(1).strip().rstrip('.').lower()}. "
                f"It is defined in the module shown above."
            )
        else:
            answer = ""  # nothing to go on: the quality gate rejects the empty answer
        toks = tuple(self.tok.encode(answer))[: sampling_params.max_tokens or None]
        return resolved(
            SampleResponse(tuple(SampledSequence("stop", toks) for _ in range(num_samples)))
        )

    def compute_logprobs(self, prompt: ModelInput) -> KFuture[list[float | None]]:
        return resolved([None] * prompt.length)

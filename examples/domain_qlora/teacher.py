"""Stand-ins for the teacher ports, used when no model adapter is installed.

:class:`ByteTokenizer` and :class:`ExtractiveTeacher` implement the ``TokenizerClient`` and
``SamplingClient`` ports without any model: the "teacher" answers from the first docstring
in the prompt. They keep the example runnable in seconds on any machine; pass a real
``SamplingClient`` (``ports.extra["teacher"]``: an hf model, a ``kitchen serve`` endpoint,
Tinker) to generate real synthetic answers - the pipeline does not change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kitchen.ports.futures import KFuture, resolved
from kitchen.ports.tokenizer import RenderedChat
from kitchen.ports.types import ModelInput, SampledSequence, SampleResponse, SamplingParams


class ByteTokenizer:
    """UTF-8 bytes as tokens (id = byte + 3); 1 = BOS, 2 = EOS."""

    vocab_size = 259
    eos_token_id = 2
    bos_token_id = 1
    pad_token_id = 0

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return [b + 3 for b in text.encode("utf-8")]

    def decode(self, tokens: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return bytes(t - 3 for t in tokens if 3 <= t < 259).decode("utf-8", errors="replace")

    def render_chat(
        self,
        messages: Any,
        *,
        train_on: Any = "last_assistant",
        add_generation_prompt: bool = False,
    ) -> RenderedChat:
        toks: list[int] = []
        weights: list[float] = []
        for m in messages:
            t = self.encode(f"<{m['role']}>{m['content']}\n")
            toks += t
            weights += [1.0 if m["role"] == "assistant" else 0.0] * len(t)
        return RenderedChat(tuple(toks), tuple(weights))


class ExtractiveTeacher:
    """A deterministic SamplingClient answering from the prompt's first docstring."""

    model_name = "extractive-teacher-v1"

    def __init__(self, tokenizer: ByteTokenizer) -> None:
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

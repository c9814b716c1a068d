"""A stand-in teacher behind the ``SamplingClient`` port.

:class:`ScriptedTeacher` knows the reference action for each observation (it is built from
the training records) and answers with its ast-grep rule YAML - except that,
deterministically per (observation, sample), a share of its answers is wrong in the ways
real teachers are wrong: a pattern that matches nothing in the code, a different fix, an
unknown language, or truncated YAML. That makes the verify-and-filter step do real work.
It runs requests on a small thread pool, so a batch submitted all at once is answered
concurrently.

Swap in a real teacher - an hf ``HfSamplingClient``, a ``kitchen serve`` endpoint or Tinker
through the remote adapters - with its tokenizer; :func:`collect_trajectories` does not
change.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from examples.edit_sft_srl.actions import AstGrepAction

from kitchen.ports.futures import KFuture
from kitchen.ports.types import ModelInput, SampledSequence, SampleResponse, SamplingParams

FAULTS = ("ok", "ok", "ok", "ok", "ok", "ok", "wrong_pattern", "wrong_fix", "bad_language",
          "bad_yaml")  # fmt: skip


class ScriptedTeacher:
    """SamplingClient answering ``answers[observation]``, with seeded faults."""

    model_name = "scripted-teacher-v1"

    def __init__(
        self,
        answers: Mapping[str, AstGrepAction],
        tokenizer: Any,
        *,
        seed: int = 0,
        workers: int = 4,
    ) -> None:
        self.answers = dict(answers)
        self.tok = tokenizer
        self.seed = seed
        self.requests = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher")

    def _fault(self, observation: str, k: int) -> str:
        h = hashlib.sha256(f"{self.seed}:{k}:{observation}".encode()).digest()
        return FAULTS[h[0] % len(FAULTS)]

    def answer(self, observation: str, k: int) -> str:
        ref = self.answers.get(observation)
        if ref is None:
            return "{}"
        fault = self._fault(observation, k)
        action = ref
        if fault == "wrong_pattern":
            action = dataclasses.replace(ref, pattern=ref.pattern + "_unknown")
        elif fault == "wrong_fix":
            action = dataclasses.replace(ref, fix=ref.fix + "_v2")
        elif fault == "bad_language":
            action = dataclasses.replace(ref, language="pyhton")
        text = action.rule_yaml()
        return text[: len(text) * 2 // 3] if fault == "bad_yaml" else text

    def _sample(self, prompt: ModelInput, n: int, params: SamplingParams) -> SampleResponse:
        observation = self.tok.decode(list(prompt.to_ints()))
        seqs = []
        for k in range(n):
            toks = tuple(self.tok.encode(self.answer(observation, k)))
            if params.max_tokens:
                toks = toks[: params.max_tokens]
            seqs.append(SampledSequence("stop", toks))
        return SampleResponse(tuple(seqs))

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> KFuture[SampleResponse]:
        self.requests += 1
        out: KFuture[SampleResponse] = KFuture()
        inner = self._pool.submit(self._sample, prompt, num_samples, sampling_params)

        def copy(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(f.result())

        inner.add_done_callback(copy)
        return out

    def compute_logprobs(self, prompt: ModelInput) -> KFuture[list[float | None]]:
        out: KFuture[list[float | None]] = KFuture()
        out.set_result([None] * prompt.length)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def collect_trajectories(
    teacher: Any,
    tokenizer: Any,
    episodes: Sequence[tuple[str, Sequence[str]]],
    *,
    samples_per_step: int = 1,
    max_tokens: int = 512,
) -> list[list[list[str]]]:
    """Ask the teacher for every step of every episode in one batch.

    ``episodes``: ``(id, [observation per step])``. All requests are submitted before any is
    awaited. Returns, per episode and step, the teacher's ``samples_per_step`` answers.
    """
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    futures = [
        [
            teacher.sample(ModelInput.from_ints(tokenizer.encode(obs)), samples_per_step, params)
            for obs in observations
        ]
        for _, observations in episodes
    ]
    return [
        [[tokenizer.decode(list(s.tokens)) for s in f.result().sequences] for f in steps]
        for steps in futures
    ]

"""``NoopSamplingClient``: samples from, and scores with, a frozen tiny-model snapshot.

Determinism: each ``sample`` call draws from ``random.Random(seed)`` where ``seed`` is
``sampling_params.seed`` when given, else the client's own ``seed``. The ``num_samples``
sequences are drawn one after another from that one generator, so the same call with the
same seed always returns the same sequences (and two calls without a seed return the same
thing too: pass a seed per call to get fresh draws).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

from kitchen.adapters.noop._model import Weights, log_softmax
from kitchen.io import read_json
from kitchen.ports.futures import KFuture, failed, resolved
from kitchen.ports.types import ModelInput, SampledSequence, SampleResponse, SamplingParams

DEFAULT_MAX_TOKENS = 16
#: Byte-level convention shared with :class:`~kitchen.adapters.noop.NoopTokenizer`.
BYTE_OFFSET = 4


class NoopSamplingClient:
    """The SamplingClient port over the noop model.

    ``weights``: a :class:`Weights` snapshot, a path to a ``noop_weights.json`` /
    ``noop_state.json`` (or the directory holding one), or ``None`` for the untrained model
    that ``NoopTrainingClient(vocab_size=..., seed=...)`` starts from.

    Returned logprobs are the model's own (before temperature, top-k and top-p), as
    Tinker returns them: the quantity ``compute_logprobs`` and training's ``forward`` give.
    String stop sequences are matched on the byte-level token convention of
    :class:`~kitchen.adapters.noop.NoopTokenizer`; integer stops are token ids.
    """

    def __init__(
        self,
        weights: Weights | str | None = None,
        vocab_size: int = 512,
        seed: int = 0,
        eos_token_id: int | None = None,
    ) -> None:
        if weights is None:
            weights = Weights.initial(vocab_size, seed)
        elif isinstance(weights, str | Path):
            weights = _load_weights(str(weights))
        self.weights: Weights = weights
        self.vocab_size = self.weights.vocab_size
        self.seed = seed
        self.eos_token_id = eos_token_id
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._dists: dict[tuple[int, float, int, float], tuple[list[float], list[float]]] = {}

    # -- distributions ----------------------------------------------------------------

    def _context_bucket(self, tokens: Sequence[int]) -> int:
        return self.weights.bucket(tokens[-1] if tokens else 0)

    def _dist(self, bucket: int, params: SamplingParams) -> tuple[list[float], list[float]]:
        """``(logp, cumulative p)`` of the sampling distribution after ``bucket``."""
        t, k, top_p = float(params.temperature), int(params.top_k), float(params.top_p)
        key = (bucket, t, k, top_p)
        hit = self._dists.get(key)
        if hit is not None:
            return hit
        logits = self.weights.logits(bucket)
        logits = [x / t for x in logits] if t != 1.0 else logits
        neg = -math.inf
        if 0 < k < len(logits):
            kth = sorted(logits, reverse=True)[k - 1]
            logits = [x if x >= kth else neg for x in logits]
        logp, p = log_softmax(logits)
        if top_p < 1.0:
            order = sorted(range(len(p)), key=lambda i: -p[i])
            keep: set[int] = set()
            mass = 0.0
            for i in order:
                keep.add(i)
                mass += p[i]
                if mass >= top_p:
                    break
            logp, p = log_softmax([x if i in keep else neg for i, x in enumerate(logits)])
        out = (logp, list(accumulate(p)))
        self._dists[key] = out
        return out

    # -- port -------------------------------------------------------------------------

    def _stops(self, stop: Any) -> tuple[set[int], list[tuple[int, ...]]]:
        ids: set[int] = set()
        seqs: list[tuple[int, ...]] = []
        if self.eos_token_id is not None:
            ids.add(self.eos_token_id)
        if stop is None:
            return ids, seqs
        items = [stop] if isinstance(stop, str | int) else list(stop)
        for s in items:
            if isinstance(s, str):
                if s:
                    seqs.append(tuple(BYTE_OFFSET + b for b in s.encode("utf-8")))
            else:
                ids.add(int(s))
        return ids, seqs

    def _sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        params: SamplingParams,
        include_prompt_logprobs: bool,
    ) -> SampleResponse:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        max_tokens = DEFAULT_MAX_TOKENS if params.max_tokens is None else int(params.max_tokens)
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        if params.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {params.temperature}")
        prompt_tokens = prompt.to_ints()
        self._check(prompt_tokens)
        stop_ids, stop_seqs = self._stops(params.stop)
        rng = random.Random(params.seed if params.seed is not None else self.seed)
        greedy = params.temperature == 0
        sequences = []
        for _ in range(num_samples):
            tokens: list[int] = []
            lps: list[float] = []
            reason: str = "length"
            context = list(prompt_tokens)
            for _step in range(max_tokens):
                bucket = self._context_bucket(context)
                if greedy:
                    logp = self.weights.table(bucket)[0]
                    tok = max(range(len(logp)), key=logp.__getitem__)
                    lp = self.weights.table(bucket)[0][tok]
                else:
                    logp, cum = self._dist(bucket, params)
                    tok = min(bisect.bisect_right(cum, rng.random() * cum[-1]), len(cum) - 1)
                    while logp[tok] == -math.inf:  # never pick a masked token at an edge
                        tok -= 1
                    lp = self.weights.table(bucket)[0][tok]
                tokens.append(tok)
                lps.append(lp)
                context.append(tok)
                if tok in stop_ids or any(
                    len(tokens) >= len(s) and tuple(tokens[-len(s) :]) == s for s in stop_seqs
                ):
                    reason = "stop"
                    break
            sequences.append(SampledSequence(reason, tuple(tokens), tuple(lps)))  # type: ignore[arg-type]
        prompt_lp = tuple(self._logprobs(prompt_tokens)) if include_prompt_logprobs else None
        return SampleResponse(tuple(sequences), prompt_lp)

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> KFuture[SampleResponse]:
        self.calls.append(
            (
                "sample",
                {
                    "prompt_len": prompt.length,
                    "num_samples": num_samples,
                    "seed": sampling_params.seed,
                    "max_tokens": sampling_params.max_tokens,
                },
            )
        )
        try:
            return resolved(
                self._sample(prompt, num_samples, sampling_params, include_prompt_logprobs)
            )
        except (ValueError, TypeError) as exc:
            return failed(exc)

    def _check(self, tokens: Sequence[int]) -> None:
        for t in tokens:
            if not 0 <= t < self.vocab_size:
                raise ValueError(f"token id {t} is outside the vocabulary [0, {self.vocab_size})")

    def _logprobs(self, tokens: Sequence[int]) -> list[float | None]:
        out: list[float | None] = [None] if tokens else []
        for prev, tok in pairwise(tokens):
            out.append(self.weights.table(self.weights.bucket(prev))[0][tok])
        return out

    def compute_logprobs(self, prompt: ModelInput) -> KFuture[list[float | None]]:
        self.calls.append(("compute_logprobs", {"prompt_len": prompt.length}))
        tokens = prompt.to_ints()
        try:
            self._check(tokens)
        except ValueError as exc:
            return failed(exc)
        return resolved(self._logprobs(tokens))

    def topk_prompt_logprobs(
        self, prompt: ModelInput, k: int
    ) -> KFuture[list[list[tuple[int, float]] | None]]:
        """The ``k`` most likely tokens (with logprobs) at each prompt position given its
        prefix, most likely first; ``None`` for the first position."""
        tokens = prompt.to_ints()
        try:
            self._check(tokens)
            if k < 1:
                raise ValueError(f"top-k needs k >= 1, got {k}")
        except ValueError as exc:
            return failed(exc)
        out: list[list[tuple[int, float]] | None] = [None] if tokens else []
        for prev in tokens[:-1]:
            logp = self.weights.table(self.weights.bucket(prev))[0]
            best = sorted(range(len(logp)), key=lambda t: (-logp[t], t))[:k]
            out.append([(t, logp[t]) for t in best])
        return resolved(out)


def _load_weights(path: str) -> Weights:
    p = Path(path)
    if p.is_dir():
        for name in ("noop_weights.json", "noop_state.json"):
            if (p / name).is_file():
                p = p / name
                break
    if not p.is_file():
        raise FileNotFoundError(f"no noop weights at {path!r}")
    return Weights.from_json(read_json(p))

"""Deterministic datums for exercising a TrainingClient (what the training contract feeds it).

Plain :mod:`kitchen.ports` values, no test framework: an adapter's own tests can build the
same batches the contract does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from kitchen.ports import Datum, ModelInput, TensorData

__all__ = ["PPO_CONFIG", "ce_datum", "make_sequences", "rl_datum"]

PPO_CONFIG = {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}
"""The ``ppo`` loss config the training contract uses (a clip range of 0.9 to 1.1)."""


def make_sequences(vocab_size: int, n: int, length: int, seed: int = 0) -> list[list[int]]:
    """``n`` deterministic token sequences of ``length + 1`` ids below ``vocab_size``."""
    rng = random.Random(seed)
    lo = 4 if vocab_size > 8 else 0
    return [[rng.randrange(lo, vocab_size) for _ in range(length + 1)] for _ in range(n)]


def ce_datum(seq: Sequence[int], weights: Sequence[float] | None = None) -> Datum:
    """Next-token datum: input ``seq[:-1]``, targets ``seq[1:]`` (Tinker's convention)."""
    n = len(seq) - 1
    w = list(weights) if weights is not None else [1.0] * n
    return Datum(
        ModelInput.from_ints(seq[:-1]),
        {
            "target_tokens": TensorData(tuple(seq[1:]), "int64"),
            "weights": TensorData(tuple(w), "float32"),
        },
    )


def rl_datum(seq: Sequence[int], sampler_logp: Sequence[float], adv: Sequence[float]) -> Datum:
    """Policy-gradient datum: ``ce_datum``'s targets plus sampler logprobs and advantages."""
    return Datum(
        ModelInput.from_ints(seq[:-1]),
        {
            "target_tokens": TensorData(tuple(seq[1:]), "int64"),
            "logprobs": TensorData(tuple(sampler_logp), "float32"),
            "advantages": TensorData(tuple(adv), "float32"),
        },
    )

"""Reference semantics of the built-in loss functions, in plain Python.

Every TrainingClient implements these exactly (the hf adapter in torch, the noop adapter
with these very functions); contract tests compare adapters against them. Conventions follow
Tinker: the objective is the *sum* over datums and positions, and per-position inputs are
aligned with ``target_tokens``. Workflows that want a per-token mean scale ``weights``.

``logp`` below is the model's logprob of ``target_tokens[i]`` at position ``i``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

#: Default PPO ratio clip thresholds (ε = 0.2 on both sides).
DEFAULT_CLIP_LOW = 0.8
DEFAULT_CLIP_HIGH = 1.2


def cross_entropy(logp: Sequence[float], weights: Sequence[float]) -> float:
    """``-Σ w_i · logp_i``."""
    return -sum(w * lp for w, lp in zip(weights, logp, strict=True))


def importance_sampling(
    logp: Sequence[float], sampler_logp: Sequence[float], advantages: Sequence[float]
) -> float:
    """``-Σ exp(logp_i - q_i) · A_i`` (REINFORCE with an off-policy correction)."""
    return -sum(
        math.exp(lp - q) * a for lp, q, a in zip(logp, sampler_logp, advantages, strict=True)
    )


def ppo(
    logp: Sequence[float],
    sampler_logp: Sequence[float],
    advantages: Sequence[float],
    clip_low: float = DEFAULT_CLIP_LOW,
    clip_high: float = DEFAULT_CLIP_HIGH,
) -> float:
    """``-Σ min(r_i · A_i, clip(r_i, lo, hi) · A_i)`` with ``r_i = exp(logp_i - q_i)``."""
    total = 0.0
    for lp, q, a in zip(logp, sampler_logp, advantages, strict=True):
        r = math.exp(lp - q)
        total += min(r * a, min(max(r, clip_low), clip_high) * a)
    return -total


def clip_thresholds(config: Mapping[str, float] | None) -> tuple[float, float]:
    """Read PPO thresholds from ``loss_fn_config`` (Tinker's key names)."""
    cfg = dict(config or {})
    lo = float(cfg.get("clip_low_threshold", DEFAULT_CLIP_LOW))
    hi = float(cfg.get("clip_high_threshold", DEFAULT_CLIP_HIGH))
    if not 0.0 <= lo <= 1.0 <= hi:
        raise ValueError(
            f"ppo loss_fn_config needs clip_low_threshold <= 1 <= clip_high_threshold, "
            f"got {lo} and {hi}"
        )
    return lo, hi


REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("target_tokens", "weights"),
    "importance_sampling": ("target_tokens", "logprobs", "advantages"),
    "ppo": ("target_tokens", "logprobs", "advantages"),
}

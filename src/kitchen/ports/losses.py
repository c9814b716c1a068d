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

#: Default ratio clip thresholds of ppo, cispo and gspo (ε = 0.2 on both sides);
#: ``loss_fn_config`` ``clip_low_threshold`` / ``clip_high_threshold`` override them.
DEFAULT_CLIP_LOW = 0.8
DEFAULT_CLIP_HIGH = 1.2
#: Default DRO quadratic-penalty weight (``loss_fn_config["beta"]``).
DEFAULT_DRO_BETA = 0.05


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


def cispo(
    logp: Sequence[float],
    sampler_logp: Sequence[float],
    advantages: Sequence[float],
    clip_low: float = DEFAULT_CLIP_LOW,
    clip_high: float = DEFAULT_CLIP_HIGH,
) -> float:
    """``-Σ sg(clip(r_i, lo, hi)) · logp_i · A_i``: the clipped ratio only weights the
    policy gradient (its gradient is stopped), so clipped tokens still get a gradient."""
    total = 0.0
    for lp, q, a in zip(logp, sampler_logp, advantages, strict=True):
        total += min(max(math.exp(lp - q), clip_low), clip_high) * lp * a
    return -total


def dro(
    logp: Sequence[float],
    sampler_logp: Sequence[float],
    advantages: Sequence[float],
    beta: float = DEFAULT_DRO_BETA,
) -> float:
    """``-Σ (logp_i · A_i - β/2 · (logp_i - q_i)²)``: REINFORCE with a quadratic penalty
    that keeps the policy near the sampler (advantages are the caller's soft ones)."""
    return -sum(
        lp * a - 0.5 * beta * (lp - q) ** 2
        for lp, q, a in zip(logp, sampler_logp, advantages, strict=True)
    )


def gspo_sequence_ratio(
    logp: Sequence[float], sampler_logp: Sequence[float], mask: Sequence[float] | None
) -> float:
    """``s = exp(mean_{i ∈ M} (logp_i - q_i))`` over the positions ``mask`` marks (non-zero);
    every position when ``mask`` is absent or marks none."""
    pairs = list(zip(logp, sampler_logp, strict=True))
    chosen = [i for i, m in enumerate(mask or []) if m != 0] or list(range(len(pairs)))
    if not chosen:
        return 1.0
    return math.exp(sum(pairs[i][0] - pairs[i][1] for i in chosen) / len(chosen))


def gspo(
    logp: Sequence[float],
    sampler_logp: Sequence[float],
    advantages: Sequence[float],
    mask: Sequence[float] | None = None,
    clip_low: float = DEFAULT_CLIP_LOW,
    clip_high: float = DEFAULT_CLIP_HIGH,
) -> float:
    """GSPO-token: ``-Σ_i min(s_i · A_i, clip(s_i, lo, hi) · A_i)`` where every ``s_i`` has
    the sequence ratio's value :func:`gspo_sequence_ratio` (its gradient is that of the
    token's own ``logp_i``: ``s_i = sg(s) · p_i / sg(p_i)``)."""
    s = gspo_sequence_ratio(logp, sampler_logp, mask)
    c = min(max(s, clip_low), clip_high)
    return -sum(min(s * a, c * a) for a in advantages)


def dro_beta(config: Mapping[str, float] | None) -> float:
    """DRO's ``beta`` from ``loss_fn_config`` (default :data:`DEFAULT_DRO_BETA`)."""
    beta = float(dict(config or {}).get("beta", DEFAULT_DRO_BETA))
    if not (beta >= 0.0 and math.isfinite(beta)):
        raise ValueError(f"dro loss_fn_config needs a finite beta >= 0, got {beta}")
    return beta


def check_config(loss_fn: str, config: Mapping[str, float] | None) -> None:
    """Raise ``ValueError`` when ``loss_fn_config`` is out of range for ``loss_fn``."""
    if loss_fn in CLIPPED:
        clip_thresholds(config, loss_fn)
    elif loss_fn == "dro":
        dro_beta(config)


def clip_thresholds(
    config: Mapping[str, float] | None, loss_fn: str = "ppo"
) -> tuple[float, float]:
    """Read PPO thresholds from ``loss_fn_config`` (Tinker's key names)."""
    cfg = dict(config or {})
    lo = float(cfg.get("clip_low_threshold", DEFAULT_CLIP_LOW))
    hi = float(cfg.get("clip_high_threshold", DEFAULT_CLIP_HIGH))
    if not 0.0 <= lo <= 1.0 <= hi:
        raise ValueError(
            f"{loss_fn} loss_fn_config needs clip_low_threshold <= 1 <= clip_high_threshold, "
            f"got {lo} and {hi}"
        )
    return lo, hi


_RL_INPUTS = ("target_tokens", "logprobs", "advantages")

#: Every built-in loss and the ``loss_fn_inputs`` it needs. ``gspo`` also reads an optional
#: ``sequence_ratio_mask`` (the positions its sequence ratio averages over).
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("target_tokens", "weights"),
    "importance_sampling": _RL_INPUTS,
    "ppo": _RL_INPUTS,
    "cispo": _RL_INPUTS,
    "dro": _RL_INPUTS,
    "gspo": _RL_INPUTS,
}

#: Losses that read the ratio clip thresholds from ``loss_fn_config``.
CLIPPED = frozenset({"ppo", "cispo", "gspo"})

#: Values of the tinker SDK's ``LossFnType`` kitchen does not implement, and why.
UNSUPPORTED: dict[str, str] = {
    "stable_reinforce": (
        "it needs Tinker's server-side sampling stability records (record_stability_info, "
        "provenance spans) and its formula is not public; use importance_sampling, ppo, cispo "
        "or gspo"
    ),
    "custom": (
        "server-side registered losses (ServiceClient.create_custom_loss) are not supported; "
        "use forward_backward_custom, which runs the loss on the client"
    ),
}

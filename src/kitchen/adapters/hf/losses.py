"""The built-in losses in torch, matching :mod:`kitchen.ports.losses` exactly.

The objective is the *sum* over datums and positions (Tinker's convention). Per-token
logprobs come from a float32 log-softmax (chunked, :mod:`kitchen.adapters.hf.logprobs`); the
loss arithmetic then runs in float64 so the reported value matches the float64 reference
formulas to rounding of the logprobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from kitchen.adapters.hf.batch import Batch
from kitchen.adapters.hf.device import loss_dtype
from kitchen.ports import losses as ref


@dataclass
class LossResult:
    """The summed loss (a graph-connected scalar) and the numbers reported as metrics."""

    loss: torch.Tensor  # float64 scalar
    denominator: float  # total weight (cross_entropy) or number of positions

    def metrics(self, num_tokens: int) -> dict[str, float]:
        total = float(self.loss.detach())
        mean = total / self.denominator if self.denominator else 0.0
        return {"loss:sum": total, "loss:mean": mean, "num_tokens": float(num_tokens)}


def compute_loss(
    loss_fn: str,
    logp: torch.Tensor,
    batch: Batch,
    loss_fn_config: Mapping[str, float] | None = None,
) -> LossResult:
    """The loss ``loss_fn`` on per-position logprobs ``logp`` [B, T] of ``batch``."""
    lp = logp.to(loss_dtype(logp.device))  # float64 (float32 on MPS, which has no float64)
    mask = batch.mask
    zero = torch.zeros((), dtype=lp.dtype, device=lp.device)
    if loss_fn == "cross_entropy":
        w = batch.inputs["weights"]
        terms = -w * lp
        denom = float(w[mask].sum())
    elif loss_fn in ref.REQUIRED_INPUTS and loss_fn != "cross_entropy":
        terms = _policy_terms(loss_fn, lp, batch, loss_fn_config)
        denom = float(batch.num_tokens)
    else:
        raise ValueError(
            f"unknown loss_fn {loss_fn!r}; choose one of {sorted(ref.REQUIRED_INPUTS)}"
        )
    loss = torch.where(mask, terms, zero).sum()
    return LossResult(loss=loss, denominator=denom)


def _policy_terms(
    loss_fn: str, lp: torch.Tensor, batch: Batch, loss_fn_config: Mapping[str, float] | None
) -> torch.Tensor:
    """Per-position loss terms [B, T] of the policy-gradient losses (padding masked later)."""
    mask = batch.mask
    zero = torch.zeros((), dtype=torch.float64, device=lp.device)
    adv = batch.inputs["advantages"]
    q = batch.inputs["logprobs"]
    # Masked before exp so padding can never produce inf·0 = nan.
    log_ratio = torch.where(mask, lp - q, zero)
    if loss_fn == "dro":
        beta = ref.dro_beta(loss_fn_config)
        return -(lp * adv - 0.5 * beta * log_ratio**2)
    lo, hi = ref.clip_thresholds(loss_fn_config, loss_fn)
    if loss_fn == "gspo":
        # Every token carries its sequence's ratio value with its own logprob's gradient.
        seq_log_ratio = _sequence_log_ratio(log_ratio.detach(), batch)
        ratio = torch.exp(seq_log_ratio + lp - lp.detach())
    else:
        ratio = torch.exp(log_ratio)
    if loss_fn == "importance_sampling":
        return -ratio * adv
    clipped = torch.clamp(ratio, lo, hi)
    if loss_fn == "cispo":
        return -clipped.detach() * lp * adv
    return -torch.minimum(ratio * adv, clipped * adv)  # ppo, gspo


def _sequence_log_ratio(log_ratio: torch.Tensor, batch: Batch) -> torch.Tensor:
    """[B, T]: at each datum's positions, the mean log-ratio over the positions its
    ``sequence_ratio_mask`` marks (all of them when it marks none or is absent)."""
    marks = batch.inputs.get("sequence_ratio_mask")
    out = torch.zeros_like(log_ratio)
    for r, a, n in batch.datum_slices():
        seg = log_ratio[r, a : a + n]
        chosen = marks[r, a : a + n] != 0 if marks is not None else None
        if chosen is None or not bool(chosen.any()):
            chosen = torch.ones_like(seg, dtype=torch.bool)
        out[r, a : a + n] = seg[chosen].mean()
    return out

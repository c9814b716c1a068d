"""The built-in losses in torch, matching :mod:`kitchen.ports.losses` exactly.

The objective is the *sum* over datums and positions (Tinker's convention). Per-token
logprobs come from a float32 ``log_softmax``; the loss arithmetic then runs in float64 so
the reported value matches the float64 reference formulas to rounding of the logprobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from kitchen.adapters.hf.batch import Batch
from kitchen.ports import losses as ref


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log p(targets[b, t] | ...)`` from ``logits`` [B, T, V]; float32 [B, T]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


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
    lp = logp.double()
    mask = batch.mask
    zero = torch.zeros((), dtype=torch.float64, device=lp.device)
    if loss_fn == "cross_entropy":
        w = batch.inputs["weights"]
        terms = -w * lp
        denom = float(w[mask].sum())
    elif loss_fn in ("importance_sampling", "ppo"):
        adv = batch.inputs["advantages"]
        q = batch.inputs["logprobs"]
        # Masked before exp so padding can never produce inf·0 = nan.
        ratio = torch.exp(torch.where(mask, lp - q, zero))
        if loss_fn == "importance_sampling":
            terms = -ratio * adv
        else:
            lo, hi = ref.clip_thresholds(loss_fn_config)
            clipped = torch.clamp(ratio, lo, hi)
            terms = -torch.minimum(ratio * adv, clipped * adv)
        denom = float(batch.num_tokens)
    else:
        raise ValueError(
            f"unknown loss_fn {loss_fn!r}; choose one of {sorted(ref.REQUIRED_INPUTS)}"
        )
    loss = torch.where(mask, terms, zero).sum()
    return LossResult(loss=loss, denominator=denom)

"""Tinker's loss functions as its documentation writes them in torch, one datum at a time
(https://tinker-docs.thinkingmachines.ai/tinker/losses/): the reference the noop and hf
adapters' values *and gradients* (stop-gradients included) are checked against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kitchen.ports import losses as ref


def doc_loss(
    loss_fn: str,
    target_logprobs: torch.Tensor,
    inputs: Mapping[str, Any],
    config: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """The summed loss of one datum; ``target_logprobs`` [N] carries the graph."""

    def t(key: str) -> torch.Tensor:
        return torch.tensor(inputs[key].data, dtype=target_logprobs.dtype)

    if loss_fn == "cross_entropy":
        return -(t("weights") * target_logprobs).sum()
    sampling_logprobs, advantages = t("logprobs"), t("advantages")
    lo, hi = ref.clip_thresholds(config, loss_fn)
    if loss_fn == "importance_sampling":
        return -(torch.exp(target_logprobs - sampling_logprobs) * advantages).sum()
    if loss_fn == "ppo":
        ratio = torch.exp(target_logprobs - sampling_logprobs)
        clipped = torch.clamp(ratio, lo, hi)
        return -torch.minimum(ratio * advantages, clipped * advantages).sum()
    if loss_fn == "cispo":
        prob_ratio = torch.exp(target_logprobs - sampling_logprobs)
        clipped_ratio = torch.clamp(prob_ratio, lo, hi)
        return -(clipped_ratio.detach() * target_logprobs * advantages).sum()
    if loss_fn == "dro":
        beta = ref.dro_beta(config)
        quadratic_term = (target_logprobs - sampling_logprobs) ** 2
        return -(target_logprobs * advantages - 0.5 * beta * quadratic_term).sum()
    if loss_fn == "gspo":
        if "sequence_ratio_mask" in inputs:
            in_ratio = t("sequence_ratio_mask") != 0
        else:
            in_ratio = torch.ones_like(target_logprobs, dtype=torch.bool)
        log_ratio = (target_logprobs.detach() - sampling_logprobs)[in_ratio].mean()
        ratio = torch.exp(log_ratio + target_logprobs - target_logprobs.detach())
        clipped = torch.clamp(ratio, lo, hi)
        return -torch.minimum(ratio * advantages, clipped * advantages).sum()
    raise ValueError(loss_fn)


def python_reference(
    loss_fn: str, lp: list[float], inputs: Mapping[str, Any], config: Any = None
) -> float:
    """The same loss from :mod:`kitchen.ports.losses` (plain float64 Python)."""
    if loss_fn == "cross_entropy":
        return ref.cross_entropy(lp, inputs["weights"].data)
    q, a = inputs["logprobs"].data, inputs["advantages"].data
    if loss_fn == "importance_sampling":
        return ref.importance_sampling(lp, q, a)
    if loss_fn == "dro":
        return ref.dro(lp, q, a, ref.dro_beta(config))
    lo, hi = ref.clip_thresholds(config, loss_fn)
    if loss_fn == "ppo":
        return ref.ppo(lp, q, a, lo, hi)
    if loss_fn == "cispo":
        return ref.cispo(lp, q, a, lo, hi)
    mask = inputs["sequence_ratio_mask"].data if "sequence_ratio_mask" in inputs else None
    return ref.gspo(lp, q, a, mask, lo, hi)

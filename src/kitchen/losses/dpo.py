"""Direct preference optimisation losses and their gradients.

Inputs are *sequence* logprobs: the sum of the completion's token logprobs under the policy
(``pi_*``) and the reference (``ref_*``). With ``z = (pi_c - ref_c) - (pi_r - ref_r)``:

- ``sigmoid`` (DPO, Rafailov et al.): ``-(1-ε)·log_sigmoid(βz) - ε·log_sigmoid(-βz)``
  (ε = label smoothing, the "conservative DPO" variant; ε = 0 is TRL's ``sigmoid``)
- ``ipo`` (Azar et al.): ``(z̄ - 1/(2β))²`` where ``z̄`` uses *per-token average* logratios,
  as TRL does (``(pi_c - ref_c)/len_c - (pi_r - ref_r)/len_r``)
- ``hinge`` (SLiC): ``max(0, 1 - βz)``

Rewards are ``β·(pi - ref)``; ``margin = reward_c - reward_r``; a pair is "accurate" when its
margin is positive. Gradients are with respect to ``pi_c`` and ``pi_r`` (the summed logprobs),
so each completion token of the chosen answer gets ``dL/dpi_c`` (chain rule through a sum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DPOLossType = Literal["sigmoid", "ipo", "hinge"]
DPO_LOSS_TYPES: tuple[DPOLossType, ...] = ("sigmoid", "ipo", "hinge")


def log_sigmoid(x: float) -> float:
    """``log(sigmoid(x))`` without overflow."""
    if x >= 0:
        return -math.log1p(math.exp(-x))
    return x - math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class DPOPair:
    """Loss, gradients and reward statistics of one preference pair."""

    loss: float
    #: ``dL/dpi_chosen`` and ``dL/dpi_rejected`` (summed sequence logprobs).
    grad_chosen: float
    grad_rejected: float
    chosen_reward: float
    rejected_reward: float

    @property
    def margin(self) -> float:
        return self.chosen_reward - self.rejected_reward


def dpo_pair(
    pi_chosen: float,
    pi_rejected: float,
    ref_chosen: float,
    ref_rejected: float,
    *,
    beta: float = 0.1,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_len: int = 1,
    rejected_len: int = 1,
) -> DPOPair:
    """The loss of one pair; ``*_len`` (completion token counts) matter only for IPO."""
    if beta <= 0:
        raise ValueError(f"DPO beta must be > 0, got {beta}")
    chosen_ratio = pi_chosen - ref_chosen
    rejected_ratio = pi_rejected - ref_rejected
    z = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        eps = label_smoothing
        loss = -(1.0 - eps) * log_sigmoid(beta * z) - eps * log_sigmoid(-beta * z)
        dz = -(1.0 - eps) * beta * sigmoid(-beta * z) + eps * beta * sigmoid(beta * z)
        gc, gr = dz, -dz
    elif loss_type == "ipo":
        lc, lr = max(1, chosen_len), max(1, rejected_len)
        zbar = chosen_ratio / lc - rejected_ratio / lr
        d = zbar - 1.0 / (2.0 * beta)
        loss = d * d
        gc, gr = 2.0 * d / lc, -2.0 * d / lr
    elif loss_type == "hinge":
        h = 1.0 - beta * z
        loss = max(0.0, h)
        dz = -beta if h > 0 else 0.0
        gc, gr = dz, -dz
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; choose one of {DPO_LOSS_TYPES}")
    return DPOPair(loss, gc, gr, beta * chosen_ratio, beta * rejected_ratio)


def dpo_batch(
    pi_chosen: Sequence[float],
    pi_rejected: Sequence[float],
    ref_chosen: Sequence[float],
    ref_rejected: Sequence[float],
    *,
    beta: float = 0.1,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lens: Sequence[int] | None = None,
    rejected_lens: Sequence[int] | None = None,
) -> tuple[float, list[DPOPair], dict[str, float]]:
    """Mean loss over pairs (TRL's reduction), per-pair terms with gradients of the *mean*,
    and metrics: ``loss``, ``rewards/chosen|rejected|margins|accuracies``."""
    n = len(pi_chosen)
    if n == 0:
        raise ValueError("dpo_batch needs at least one pair")
    cl = list(chosen_lens) if chosen_lens is not None else [1] * n
    rl = list(rejected_lens) if rejected_lens is not None else [1] * n
    pairs = []
    for i in range(n):
        p = dpo_pair(
            pi_chosen[i],
            pi_rejected[i],
            ref_chosen[i],
            ref_rejected[i],
            beta=beta,
            loss_type=loss_type,
            label_smoothing=label_smoothing,
            chosen_len=cl[i],
            rejected_len=rl[i],
        )
        pairs.append(
            DPOPair(
                p.loss, p.grad_chosen / n, p.grad_rejected / n, p.chosen_reward, p.rejected_reward
            )
        )
    loss = sum(p.loss for p in pairs) / n
    metrics = {
        "loss": loss,
        "rewards/chosen": sum(p.chosen_reward for p in pairs) / n,
        "rewards/rejected": sum(p.rejected_reward for p in pairs) / n,
        "rewards/margins": sum(p.margin for p in pairs) / n,
        "rewards/accuracies": sum(1.0 for p in pairs if p.margin > 0) / n,
        "logps/chosen": sum(pi_chosen) / n,
        "logps/rejected": sum(pi_rejected) / n,
    }
    return loss, pairs, metrics

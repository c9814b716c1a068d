"""Pieces the RL, preference and distillation workflows share."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field

from kitchen.config import KitchenConfig
from kitchen.ports.types import AdamParams, ForwardBackwardOutput


class TrainFields(KitchenConfig):
    """Optimiser, schedule and bookkeeping fields common to the three workflows."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, lt=2**32, description="seeds every RNG (numpy/torch take 32 bits)")
    learning_rate: float = Field(1e-2, gt=0, le=10)
    lr_schedule: Literal["constant", "linear"] = "constant"
    weight_decay: float = Field(0.0, ge=0, le=10)
    grad_clip_norm: float = Field(1.0, ge=0, le=1e6, description="0 disables clipping")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0, le=1)
    checkpoint_every: int = Field(5, ge=0, description="steps between checkpoints; 0 = never")
    eval_every: int = Field(0, ge=0, description="steps between evals; 0 = only at the end")
    model: dict[str, Any] = Field(default_factory=dict, description="adapter model spec")
    tokenizer: str | None = Field(None, description="tokenizer directory (default: the model's)")


def adam(cfg: TrainFields, step: int, total: int) -> AdamParams:
    lr = cfg.learning_rate
    if cfg.lr_schedule == "linear" and total > 0:
        lr = cfg.learning_rate * max(0.0, 1.0 - step / total)
    return AdamParams(
        learning_rate=lr,
        beta1=cfg.beta1,
        beta2=cfg.beta2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        grad_clip_norm=cfg.grad_clip_norm,
    )


class SummedLoss:
    """A future-like that sums ``loss:sum`` over several forward_backward futures."""

    def __init__(self, futures: Sequence[Any]) -> None:
        self.futures = list(futures)

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def result(self, timeout: float | None = None) -> ForwardBackwardOutput:
        total = 0.0
        for f in self.futures:
            out = f.result(timeout)
            total += float(out.metrics.get("loss:sum", math.nan))
        return ForwardBackwardOutput("summed", (), {"loss:sum": total})


def permutation(n: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def mix_seed(*parts: int) -> int:
    h = 0x2545F491
    for p in parts:
        h = (h * 1_000_003 + int(p) + 0x9E3779B9) & 0x7FFFFFFF
    return h

"""Config of the distillation workflow."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kitchen.losses.divergences import DivergenceKind
from kitchen.rl.common import TrainFields


class DistillConfig(TrainFields):
    """Knowledge distillation from a teacher SamplingClient, off- or on-policy."""

    mode: Literal["off_policy", "on_policy"] = "off_policy"
    dataset: str = Field("synthetic:distill", description="prompt/completion rows")
    eval_fraction: float = Field(0.125, ge=0.0, lt=1.0)
    max_length: int = Field(64, ge=2, le=1 << 20)
    teacher: Literal["auto", "port", "self_sft"] = Field(
        "auto",
        description="port: ports.extra['teacher']; self_sft: fine-tune a snapshot of the "
        "student on the dataset first; auto: the port when wired, else self_sft",
    )
    teacher_sft_steps: int = Field(40, ge=1)
    teacher_learning_rate: float = Field(0.1, gt=0, le=10)
    # off-policy
    divergence: DivergenceKind = "forward_kl"
    jsd_beta: float = Field(0.5, ge=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0)
    num_candidates: int = Field(
        8, ge=1, description="teacher samples per position forming the candidate token set"
    )
    # on-policy
    group_size: int = Field(4, ge=1)
    max_tokens: int = Field(4, ge=1)
    kl_coef: float = Field(1.0, gt=0)
    sample_temperature: float = Field(1.0, gt=0)
    # loop
    num_steps: int = Field(30, ge=1)
    batch_size: int = Field(8, ge=1, le=1 << 20)
    learning_rate: float = Field(5e-2, gt=0, le=10)

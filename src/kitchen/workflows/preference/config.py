"""Config of the preference (DPO) workflow."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kitchen.losses.dpo import DPOLossType
from kitchen.rl.common import TrainFields


class DPOConfig(TrainFields):
    """Direct preference optimisation on (prompt, chosen, rejected) rows."""

    dataset: str = Field("synthetic:dpo", description="dataset source, or 'synthetic:dpo'")
    eval_dataset: str | None = None
    eval_fraction: float = Field(0.125, ge=0.0, lt=1.0)
    max_length: int = Field(256, ge=2, le=1 << 20)
    beta: float = Field(0.1, gt=0)
    loss_type: DPOLossType = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    reference: Literal["precomputed", "frozen_copy", "adapter_disabled"] = Field(
        "precomputed",
        description="precomputed: initial weights, once, via forward (every backend); "
        "frozen_copy: ports.extra['reference']; adapter_disabled: a backend capability",
    )
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(8, ge=1, le=1 << 20)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(5e-2, gt=0, le=10)

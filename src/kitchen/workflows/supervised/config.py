"""Config of the supervised fine-tuning workflow."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from kitchen.config import KitchenConfig


class SupervisedConfig(KitchenConfig):
    """Supervised fine-tuning. Unknown fields are rejected so typos surface at once."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, lt=2**32, description="seeds every RNG (numpy/torch take 32 bits)")
    dataset: str = Field("noop://sft-tiny", description="dataset source (path, URL or name)")
    eval_dataset: str | None = Field(None, description="separate eval set; else a held-out split")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    on_bad_row: Literal["error", "quarantine"] = Field(
        "error", description="fail on a bad row, or move it to rejected.jsonl with a reason"
    )
    train_on: Literal["last_assistant", "all_assistant", "all"] = "last_assistant"
    max_length: int = Field(256, ge=2, le=1 << 20)
    on_long_row: Literal["truncate", "error"] = Field(
        "truncate",
        description="a row longer than max_length: cut it there (counted and logged as a "
        "warning) or fail naming the row",
    )
    packing: bool = Field(
        False,
        description="pack each batch padding-free into rows (position ids restart per "
        "sample, no cross-sample attention) on backends that support it",
    )
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=1, le=1 << 20)
    learning_rate: float = Field(1e-2, gt=0, le=10)
    lr_schedule: Literal["constant", "linear"] = "linear"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0, le=10)
    grad_clip_norm: float = Field(1.0, ge=0, le=1e6, description="0 disables clipping")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0, le=1)
    eval_every: int = Field(0, ge=0, description="steps between evals; 0 = end of each epoch")
    checkpoint_every: int = Field(10, ge=0, description="steps between checkpoints; 0 = never")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    model: dict[str, Any] = Field(default_factory=dict, description="adapter model spec")
    tokenizer: str | None = Field(None, description="tokenizer directory (default: the model's)")

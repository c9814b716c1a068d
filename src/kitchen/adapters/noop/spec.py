"""``config.model`` for the noop adapters: the in-memory model's name and vocabulary."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from kitchen.config import KitchenConfig

#: The noop model holds ``vocab_size * (buckets + 1)`` floats in Python lists; beyond this
#: it would take minutes and gigabytes to build, so it is refused up front.
MAX_NOOP_VOCAB = 1 << 17


class NoopModelSpec(KitchenConfig):
    """Keys of ``model`` the noop adapters read; other keys (an hf spec in a config meant
    for several adapter families) are ignored."""

    model_config = ConfigDict(extra="ignore")

    name: str = "noop-tiny"
    vocab_size: int = Field(512, ge=2, le=MAX_NOOP_VOCAB)

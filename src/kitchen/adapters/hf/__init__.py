"""The hf adapter family: transformers / peft / bitsandbytes behind kitchen's ports.

Importing this package loads nothing heavy; import the submodules (``training``,
``sampling``, ``model_spec``) to get the classes. Models load lazily on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitchen.adapters.hf.model_spec import LoraSpec, ModelSpec, QuantSpec
    from kitchen.adapters.hf.sampling import HfSamplingClient
    from kitchen.adapters.hf.training import HfTrainingClient

_LAZY = {
    "ModelSpec": "kitchen.adapters.hf.model_spec",
    "LoraSpec": "kitchen.adapters.hf.model_spec",
    "QuantSpec": "kitchen.adapters.hf.model_spec",
    "HfTrainingClient": "kitchen.adapters.hf.training",
    "HfSamplingClient": "kitchen.adapters.hf.sampling",
}

__all__ = ["HfSamplingClient", "HfTrainingClient", "LoraSpec", "ModelSpec", "QuantSpec"]


def __getattr__(name: str) -> Any:
    # PEP 562: the heavy modules import only when one of their names is first used.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

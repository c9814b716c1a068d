"""kitchen: ML training orchestration on ports and adapters.

The public API is re-exported here lazily, so ``import kitchen`` is cheap and never
imports torch::

    from kitchen import workflow, stage, loop, conditional, parallel, Context, run
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # DSL / IR
    "stage": "kitchen.dsl",
    "loop": "kitchen.dsl",
    "conditional": "kitchen.dsl",
    "parallel": "kitchen.dsl",
    "branch": "kitchen.dsl",
    "workflow": "kitchen.dsl",
    "Workflow": "kitchen.dsl",
    # running
    "Context": "kitchen.context",
    "Runner": "kitchen.runner",
    "ResumePoint": "kitchen.runner",
    "run": "kitchen.runner",
    "Checkpoint": "kitchen.checkpoint",
    "Ports": "kitchen.ports.bundle",
    "build_ports": "kitchen.bootstrap",
    "run_recipe": "kitchen.launch",
    # recipes
    "Recipe": "kitchen.recipes",
    "get_recipe": "kitchen.recipes",
    "list_recipes": "kitchen.recipes",
    "register": "kitchen.recipes",
    # errors
    "KitchenError": "kitchen.errors",
    "ConfigError": "kitchen.errors",
    "DataError": "kitchen.errors",
    "StageError": "kitchen.errors",
    "WorkflowError": "kitchen.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kitchen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

"""The ``distill`` recipe."""

from __future__ import annotations

from kitchen.recipes.defaults import hf_full_defaults
from kitchen.recipes.recipe import Recipe
from kitchen.workflows.distillation import DistillConfig, distill_workflow


def distill() -> Recipe:
    return Recipe(
        name="distill",
        description="Distillation from a teacher: token KL/JSD (off-policy) or on-policy.",
        config_model=DistillConfig,
        build=distill_workflow,
        adapter_defaults=hf_full_defaults(),
    )

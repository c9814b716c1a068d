"""The ``dpo`` recipe."""

from __future__ import annotations

from kitchen.recipes.defaults import hf_full_defaults
from kitchen.recipes.recipe import Recipe
from kitchen.workflows.preference import DPOConfig, dpo_workflow


def dpo() -> Recipe:
    return Recipe(
        name="dpo",
        description="Preference optimisation (DPO sigmoid / IPO / hinge) on chosen/rejected pairs.",
        config_model=DPOConfig,
        build=dpo_workflow,
        adapter_defaults=hf_full_defaults(learning_rate=0.01),
    )

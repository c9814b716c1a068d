"""The ``dpo`` recipe."""

from __future__ import annotations

from kitchen.recipes.defaults import HF_DEFAULTS
from kitchen.recipes.recipe import Recipe
from kitchen.workflows.preference import DPOConfig, dpo_workflow


def dpo() -> Recipe:
    return Recipe(
        name="dpo",
        description="Preference optimisation (DPO sigmoid / IPO / hinge) on chosen/rejected pairs.",
        config_model=DPOConfig,
        build=dpo_workflow,
        adapter_defaults=HF_DEFAULTS,
    )

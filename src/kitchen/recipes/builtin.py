"""Built-in recipes."""

from __future__ import annotations

from kitchen.recipes.recipe import Recipe
from kitchen.workflows.supervised import SupervisedConfig, supervised_workflow


def sft() -> Recipe:
    return Recipe(
        name="sft",
        description="Supervised fine-tuning (chat, prompt/completion or text rows).",
        config_model=SupervisedConfig,
        build=supervised_workflow,
    )

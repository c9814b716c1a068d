"""The quickstart recipe: the README's main job."""

from __future__ import annotations

from kitchen.recipes.recipe import Recipe
from kitchen.workflows.quickstart import QuickstartConfig, quickstart_workflow


def quickstart() -> Recipe:
    return Recipe(
        name="quickstart",
        description=(
            "Train a BPE tokenizer and a tiny Llama from scratch on the bundled corpus "
            "(about 1 min on CPU)."
        ),
        config_model=QuickstartConfig,
        build=quickstart_workflow,
        adapters=("noop", "hf"),
    )

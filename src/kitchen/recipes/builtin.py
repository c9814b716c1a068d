"""Built-in recipes."""

from __future__ import annotations

from kitchen.recipes.defaults import HF_DEFAULTS
from kitchen.recipes.recipe import Recipe
from kitchen.workflows.supervised import SupervisedConfig, supervised_workflow


def sft() -> Recipe:
    from kitchen.data import corpus_path

    # On hf the default data is the bundled chat set (noop serves its own synthetic set).
    hf = {"hf": {**HF_DEFAULTS["hf"], "dataset": str(corpus_path("chat.jsonl"))}}
    return Recipe(
        name="sft",
        description="Supervised fine-tuning (chat, prompt/completion or text rows).",
        config_model=SupervisedConfig,
        build=supervised_workflow,
        adapter_defaults=hf,
    )

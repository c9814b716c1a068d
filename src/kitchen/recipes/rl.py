"""The ``rl`` recipe."""

from __future__ import annotations

from kitchen.recipes.defaults import hf_full_defaults
from kitchen.recipes.recipe import Recipe
from kitchen.workflows.reinforcement import RLConfig, rl_workflow


def rl() -> Recipe:
    return Recipe(
        name="rl",
        description="RL on env groups (GRPO/RLOO advantages, importance sampling or PPO).",
        config_model=RLConfig,
        build=rl_workflow,
        adapter_defaults=hf_full_defaults(learning_rate=0.03),
    )

"""Reinforcement learning on Env groups (GRPO / RLOO / PPO), online or offline."""

from kitchen.workflows.reinforcement.config import RLConfig
from kitchen.workflows.reinforcement.workflow import rl_workflow

__all__ = ["RLConfig", "rl_workflow"]

"""Reinforcement learning building blocks: envs, rewards, advantages, rollouts."""

from kitchen.rl.advantages import group_advantages
from kitchen.rl.arithmetic import ArithmeticEnvSpec, Problem, problems
from kitchen.rl.env import (
    Env,
    EnvGroupBuilder,
    MultiTurnEnv,
    RepeatedEnvGroup,
    RewardFn,
    SingleTurnEnv,
    StepResult,
    StopCondition,
    default_stop,
    encode_prompt,
)
from kitchen.rl.rewards import (
    INVALID_ACTION_REWARD,
    action_similarity,
    action_similarity_reward,
    exact_match,
    get_reward,
)
from kitchen.rl.rollouts import (
    RLDatum,
    Trajectory,
    Transition,
    flatten,
    reference_logprobs,
    rollout_groups,
    trajectory_datums,
)

__all__ = [
    "INVALID_ACTION_REWARD",
    "ArithmeticEnvSpec",
    "Env",
    "EnvGroupBuilder",
    "MultiTurnEnv",
    "Problem",
    "RLDatum",
    "RepeatedEnvGroup",
    "RewardFn",
    "SingleTurnEnv",
    "StepResult",
    "StopCondition",
    "Trajectory",
    "Transition",
    "action_similarity",
    "action_similarity_reward",
    "default_stop",
    "encode_prompt",
    "exact_match",
    "flatten",
    "get_reward",
    "group_advantages",
    "problems",
    "reference_logprobs",
    "rollout_groups",
    "trajectory_datums",
]

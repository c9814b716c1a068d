"""Config of the reinforcement-learning workflow."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kitchen.rl.common import TrainFields


class RLConfig(TrainFields):
    """Group-based policy-gradient RL (GRPO/RLOO-style) with importance sampling or PPO."""

    env: str = Field(
        "arithmetic",
        description="'arithmetic', 'offline' (stored teacher trajectories), or "
        "'module:function' returning an EnvSource",
    )
    # arithmetic env
    min_operand: int = 0
    max_operand: int = Field(1, ge=0)
    ops: list[str] = Field(default_factory=lambda: ["+"])
    max_tokens: int = Field(1, ge=1, description="max tokens per action")
    format_reward: float = Field(
        0.5, ge=0, lt=1, description="arithmetic: shaping reward for a wrong integer answer"
    )
    chat: bool = Field(False, description="render prompts with the chat template")
    # offline env
    offline_dataset: str = Field("synthetic:trajectories", description="teacher trajectories")
    verifier: str | None = Field(None, description="'verified_flag' (default), 'none' or a path")
    step_reward: str = Field(
        "action_similarity", description="'action_similarity', 'exact_match' or 'module:function'"
    )
    # batch
    num_steps: int = Field(30, ge=1)
    groups_per_batch: int = Field(8, ge=1)
    group_size: int = Field(16, ge=1)
    temperature: float = Field(1.0, gt=0)
    # advantages
    normalize_std: bool = Field(False, description="divide by the group std (GRPO)")
    leave_one_out: bool = Field(False, description="RLOO baseline")
    loss_normalization: Literal["tokens", "sequences", "sum"] = "tokens"
    # loss
    loss_fn: Literal["importance_sampling", "ppo"] = "importance_sampling"
    clip_epsilon: float = Field(0.2, gt=0, lt=1)
    epsilon_high: float | None = Field(None, gt=0, description="upper clip; default clip_epsilon")
    ppo_epochs: int = Field(1, ge=1, description="passes over the same rollouts")
    num_minibatches: int = Field(1, ge=1)
    kl_beta: float = Field(0.0, ge=0, description="k3 KL penalty to the initial policy")
    # pipelining
    pipeline_rollouts: bool = Field(
        False, description="sample the next batch while the current step trains"
    )
    max_off_policy_steps: int = Field(
        1, ge=0, description="discard prefetched rollouts older than this many steps"
    )
    # eval
    eval_groups: int = Field(16, ge=0)
    learning_rate: float = Field(0.1, gt=0, le=10)

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        if self.pipeline_rollouts and self.max_off_policy_steps < 1:
            raise ValueError(
                "pipeline_rollouts samples one step ahead, so max_off_policy_steps must be >= 1"
            )
        if self.min_operand > self.max_operand:
            raise ValueError("min_operand must be <= max_operand")
        bad = [o for o in self.ops if o not in ("+", "-")]
        if bad or not self.ops:
            raise ValueError(f"ops must be a non-empty subset of ['+', '-'], got {self.ops}")
        if self.groups_per_batch < self.num_minibatches:
            raise ValueError("num_minibatches must be <= groups_per_batch")
        return self

    @property
    def clip_thresholds(self) -> tuple[float, float]:
        hi = self.epsilon_high if self.epsilon_high is not None else self.clip_epsilon
        return 1.0 - self.clip_epsilon, 1.0 + hi

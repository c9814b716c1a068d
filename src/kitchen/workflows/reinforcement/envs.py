"""Where the RL workflow's env groups come from (one ``EnvSource`` per ``env`` setting)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from kitchen.context import Context
from kitchen.errors import DataError
from kitchen.rl import offline
from kitchen.rl.arithmetic import ArithmeticEnvSpec, problems
from kitchen.rl.common import mix_seed, permutation
from kitchen.rl.env import EnvGroupBuilder
from kitchen.rl.rewards import get_reward, load_callable
from kitchen.workflows.reinforcement.config import RLConfig


@runtime_checkable
class EnvSource(Protocol):
    """Env groups for training step ``step`` and for evaluation (a pure function of them)."""

    def train_batch(self, step: int, n_groups: int) -> Sequence[EnvGroupBuilder]: ...

    def eval_batch(self, n_groups: int) -> Sequence[EnvGroupBuilder]: ...


class ArithmeticSource:
    def __init__(self, ctx: Context, cfg: RLConfig) -> None:
        self.cfg = cfg
        tok = ctx.ports.require("tokenizer")
        self.train_spec = ArithmeticEnvSpec(
            tok, cfg.group_size, cfg.max_tokens, cfg.chat, cfg.format_reward
        )
        # Evaluation scores exact answers only.
        self.eval_spec = ArithmeticEnvSpec(tok, 1, cfg.max_tokens, cfg.chat, 0.0)

    def _problems(self, n: int, seed: int) -> list[Any]:
        c = self.cfg
        return problems(
            n, seed=seed, min_operand=c.min_operand, max_operand=c.max_operand, ops=c.ops
        )

    def train_batch(self, step: int, n_groups: int) -> Sequence[EnvGroupBuilder]:
        return [
            self.train_spec.group(p)
            for p in self._problems(n_groups, mix_seed(self.cfg.seed, step))
        ]

    def eval_batch(self, n_groups: int) -> Sequence[EnvGroupBuilder]:
        return [
            self.eval_spec.group(p) for p in self._problems(n_groups, mix_seed(self.cfg.seed, -1))
        ]


class OfflineSource:
    """Verified steps of stored teacher trajectories as single-turn envs."""

    def __init__(self, ctx: Context, cfg: RLConfig) -> None:
        self.cfg = cfg
        self.tok = ctx.ports.require("tokenizer")
        src = cfg.offline_dataset
        if src.startswith("synthetic:"):
            rows: list[Any] = offline.synthetic_trajectories(32, seed=cfg.seed)
        else:
            rows = list(ctx.ports.require("dataset").load(src))
        steps, self.stats = offline.verified_steps(
            rows, offline.get_verifier(cfg.verifier), source=src
        )
        if not steps:
            raise DataError(src, None, None, "the verifier kept no steps; nothing to train on")
        n_eval = max(1, len(steps) // 8) if len(steps) > 1 else 0
        self.eval_steps = steps[:n_eval]
        self.train_steps = steps[n_eval:] or steps
        self.reward = get_reward(cfg.step_reward)

    def _group(self, step: offline.OfflineStep, size: int) -> EnvGroupBuilder:
        return offline.step_group(
            step,
            self.tok,
            self.reward,
            group_size=size,
            max_tokens=self.cfg.max_tokens,
            chat=self.cfg.chat,
        )

    def train_batch(self, step: int, n_groups: int) -> Sequence[EnvGroupBuilder]:
        n = len(self.train_steps)
        out = []
        for j in range(n_groups):
            k = step * n_groups + j
            order = permutation(n, mix_seed(self.cfg.seed, k // n))
            out.append(self._group(self.train_steps[order[k % n]], self.cfg.group_size))
        return out

    def eval_batch(self, n_groups: int) -> Sequence[EnvGroupBuilder]:
        return [self._group(s, 1) for s in self.eval_steps[:n_groups]]


def make_source(ctx: Context, cfg: RLConfig) -> EnvSource:
    if cfg.env == "arithmetic":
        return ArithmeticSource(ctx, cfg)
    if cfg.env == "offline":
        return OfflineSource(ctx, cfg)
    factory = load_callable(cfg.env)
    source = factory(ctx, cfg)
    if not isinstance(source, EnvSource):
        raise TypeError(f"{cfg.env} returned {type(source).__name__}, not an EnvSource")
    return source

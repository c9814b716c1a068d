"""The RL workflow's stages on the in-test fake model (no adapter package needed)."""

from __future__ import annotations

from typing import Any

import pytest

from kitchen.context import Context
from kitchen.runner.runner import run
from kitchen.workflows.reinforcement import RLConfig, rl_workflow
from tests.rl.fakes import MemoryMetrics, fake_ports


def _run(**overrides: Any) -> tuple[Context, MemoryMetrics]:
    cfg = RLConfig(**overrides)
    ports = fake_ports()
    mem = MemoryMetrics()
    ports.metrics = mem
    ctx = Context(cfg, ports)
    run(rl_workflow(cfg), ctx)
    return ctx, mem


def _rise(xs: list[float]) -> tuple[float, float]:
    k = max(1, len(xs) // 4)
    return sum(xs[:k]) / k, sum(xs[-k:]) / k


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"loss_fn": "ppo", "ppo_epochs": 2, "num_minibatches": 2, "normalize_std": True},
        {"leave_one_out": True, "kl_beta": 0.01, "pipeline_rollouts": True},
    ],
)
def test_reward_rises_on_arithmetic(over: dict[str, Any]) -> None:
    ctx, mem = _run(num_steps=30, **over)
    r = mem.series("reward")
    first, last = _rise(r)
    print(over, [round(x, 2) for x in r], mem.series("val_reward"))
    assert last > first + 0.2
    assert ctx.state["step"] == 30

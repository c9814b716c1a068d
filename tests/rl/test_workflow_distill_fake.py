"""The distillation workflow's stages on the in-test fake model."""

from __future__ import annotations

from typing import Any

import pytest

from kitchen.context import Context
from kitchen.runner.runner import run
from kitchen.workflows.distillation import DistillConfig, distill_workflow
from tests.rl.fakes import MemoryMetrics, fake_ports


def _run(**overrides: Any) -> tuple[Context, MemoryMetrics]:
    cfg = DistillConfig(**overrides)
    ports = fake_ports()
    mem = MemoryMetrics()
    ports.metrics = mem
    ctx = Context(cfg, ports)
    run(distill_workflow(cfg), ctx)
    return ctx, mem


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"divergence": "reverse_kl", "temperature": 2.0},
        {"divergence": "jsd", "jsd_beta": 0.5},
        {"mode": "on_policy", "learning_rate": 0.3, "group_size": 8, "num_steps": 40},
    ],
)
def test_student_teacher_kl_falls(over: dict[str, Any]) -> None:
    over = {"num_steps": 20, **over}
    _ctx, mem = _run(eval_every=5, **over)
    val = mem.series("kl/train_fixed")
    print(over, [round(x, 3) for x in mem.series("kl")], [round(x, 3) for x in val])
    assert val[-1] < 0.5 * val[0]

"""The DPO workflow's stages on the in-test fake model."""

from __future__ import annotations

from typing import Any

import pytest

from kitchen.context import Context
from kitchen.errors import DataError, StageError
from kitchen.runner.runner import run
from kitchen.workflows.preference import DPOConfig, dpo_workflow
from kitchen.workflows.preference.data import validate_row
from tests.rl.fakes import MemoryMetrics, fake_ports


def _run(**overrides: Any) -> tuple[Context, MemoryMetrics]:
    cfg = DPOConfig(**overrides)
    ports = fake_ports()
    mem = MemoryMetrics()
    ports.metrics = mem
    ctx = Context(cfg, ports)
    run(dpo_workflow(cfg), ctx)
    return ctx, mem


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_margins_grow(loss_type: str) -> None:
    _ctx, mem = _run(loss_type=loss_type, epochs=6)
    margins = mem.series("dpo/margin")
    acc = mem.series("dpo/accuracy")
    print(loss_type, [round(x, 3) for x in margins], acc, mem.series("val/dpo_accuracy"))
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # policy == reference at step 0
    k = len(margins) // 4
    assert sum(margins[-k:]) / k > sum(margins[:k]) / k + 0.05
    assert sum(acc[-k:]) / k > sum(acc[:k]) / k + 0.2
    assert mem.series("val/dpo_accuracy")[-1] > 0.5


def test_row_validation_names_the_field() -> None:
    with pytest.raises(DataError, match="rejected"):
        validate_row({"prompt": "p", "chosen": "a", "rejected": "a"}, "src", 3)
    with pytest.raises(DataError, match="chosen"):
        validate_row({"prompt": "p", "rejected": "a"}, "src", 0)
    with pytest.raises(DataError, match="prompt"):
        validate_row({"prompt": [], "chosen": "a", "rejected": "b"}, "src", 0)


def test_adapter_disabled_needs_a_capability() -> None:
    with pytest.raises(StageError, match="adapter_disabled"):
        _run(reference="adapter_disabled")

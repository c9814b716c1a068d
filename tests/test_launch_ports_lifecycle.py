"""run_recipe closes the ports it built (worker threads, remote sessions), not injected ones."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from kitchen import Context, Recipe
from kitchen.bootstrap import build_ports
from kitchen.dsl import stage, workflow
from kitchen.errors import StageError
from kitchen.launch import run_recipe
from kitchen.ports.bundle import Ports
from kitchen.recipes.builtin import sft


def _workers() -> set[threading.Thread]:
    """Live threads other than the main one (adapters run their work on worker threads)."""
    return {t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()}


def test_ports_built_by_run_recipe_are_closed(tmp_path: Path) -> None:
    before = _workers()
    for i in range(3):  # a long-lived process running several recipes keeps no threads
        run_recipe(sft(), adapters="noop", run_dir=tmp_path / f"r{i}", overrides=["epochs=1"])
    assert _workers() - before == set()


class _Cfg(BaseModel):
    seed: int = 0


def _train_then_fail(ctx: Context) -> None:
    from kitchen.testing.datums import ce_datum, make_sequences

    seq = make_sequences(64, 1, 8)[0]
    ctx.ports.require("training").forward_backward([ce_datum(seq)], "cross_entropy").result()
    raise RuntimeError("boom after training started")


def test_failed_runs_close_their_ports_too(tmp_path: Path) -> None:
    recipe = Recipe(
        name="fails",
        description="starts the training worker, then fails",
        config_model=_Cfg,
        build=lambda cfg: workflow("fails", stage(_train_then_fail)),
    )
    before = _workers()
    with pytest.raises(StageError, match="boom after training started"):
        run_recipe(recipe, adapters="noop", run_dir=tmp_path / "bad")
    assert _workers() - before == set()


class Closing:
    def __init__(self, fail: bool = False) -> None:
        self.closed = 0
        self.fail = fail

    def close(self) -> None:
        self.closed += 1
        if self.fail:
            raise RuntimeError("close failed")


def test_ports_close_each_instance_once_and_reports_errors() -> None:
    shared, bad, extra = Closing(), Closing(fail=True), Closing()
    metrics = Closing()
    ports = Ports(
        training=shared,  # type: ignore[arg-type]
        sampling=shared,  # type: ignore[arg-type]
        dataset=bad,  # type: ignore[arg-type]
        metrics=metrics,  # type: ignore[arg-type]
        extra={"teacher": extra, "note": "not a port"},
    )
    errors = ports.close()
    assert [str(e) for e in errors] == ["close failed"]
    assert (shared.closed, bad.closed, extra.closed) == (1, 1, 1)
    assert metrics.closed == 0  # the metrics recorder owns the metrics port's lifecycle


def test_injected_ports_are_left_open(tmp_path: Path) -> None:
    cfg: Any = sft().config({}, ["epochs=1"])
    ports = build_ports("noop", cfg)
    probe = Closing()
    ports.extra["probe"] = probe
    run_recipe(sft(), adapters="noop", run_dir=tmp_path / "r", config=cfg.model_dump(), ports=ports)
    assert probe.closed == 0
    ports.close()
    assert probe.closed == 1

"""rl / dpo / distill on the hf adapters with a tiny from-config model (CPU, < ~30 s each)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.hf

pytest.importorskip("torch")
pytest.importorskip("kitchen.adapters.hf.training", reason="hf adapter not landed yet")
pytest.importorskip("kitchen.adapters.hf.wiring", reason="hf wiring not landed yet")

from kitchen.launch import run_recipe  # noqa: E402
from kitchen.recipes.distill import distill  # noqa: E402
from kitchen.recipes.dpo import dpo  # noqa: E402
from kitchen.recipes.rl import rl  # noqa: E402


def _finite(records: list[dict[str, object]], key: str) -> list[float]:
    xs = [float(r[key]) for r in records if key in r]  # type: ignore[arg-type]
    assert xs, f"no {key} logged"
    assert all(math.isfinite(x) for x in xs)
    return xs


def test_hf_rl(tmp_path: Path) -> None:
    res = run_recipe(rl(), adapters="hf", run_dir=tmp_path / "rl", overrides=["num_steps=6"])
    _finite(res.run_dir.metrics(), "reward")


def test_hf_dpo(tmp_path: Path) -> None:
    res = run_recipe(dpo(), adapters="hf", run_dir=tmp_path / "dpo", overrides=["epochs=2"])
    _finite(res.run_dir.metrics(), "dpo/margin")


def test_hf_distill(tmp_path: Path) -> None:
    res = run_recipe(
        distill(),
        adapters="hf",
        run_dir=tmp_path / "d",
        overrides=["num_steps=6", "teacher_sft_steps=10", "num_candidates=4"],
    )
    _finite(res.run_dir.metrics(), "kl")

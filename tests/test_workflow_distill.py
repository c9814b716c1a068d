"""`kitchen run distill` end to end on the noop adapters: student-teacher KL falls."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitchen.launch import run_recipe
from kitchen.recipes.distill import distill

noop = pytest.importorskip("kitchen.adapters.noop")
if not hasattr(noop, "NoopTrainingClient"):
    pytest.skip("noop adapters not landed yet", allow_module_level=True)
pytest.importorskip("kitchen.adapters.metrics.jsonl", reason="JSONL metrics store not landed yet")


def test_distill_noop_kl_falls(tmp_path: Path) -> None:
    res = run_recipe(distill(), adapters="noop", run_dir=tmp_path / "r", overrides=["eval_every=5"])
    kl = [r["kl/train_fixed"] for r in res.run_dir.metrics() if "kl/train_fixed" in r]
    assert kl[-1] < kl[0]

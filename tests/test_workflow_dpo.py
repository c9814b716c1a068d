"""`kitchen run dpo` end to end on the noop adapters: margins grow."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitchen.launch import run_recipe
from kitchen.recipes.dpo import dpo

noop = pytest.importorskip("kitchen.adapters.noop")
if not hasattr(noop, "NoopTrainingClient"):
    pytest.skip("noop adapters not landed yet", allow_module_level=True)
pytest.importorskip("kitchen.adapters.metrics.jsonl", reason="JSONL metrics store not landed yet")


def test_dpo_noop_margins_grow(tmp_path: Path) -> None:
    res = run_recipe(dpo(), adapters="noop", run_dir=tmp_path / "r", overrides=["epochs=6"])
    recs = res.run_dir.metrics()
    margins = [r["dpo/margin"] for r in recs if "dpo/margin" in r]
    k = len(margins) // 4
    assert sum(margins[-k:]) / k > sum(margins[:k]) / k

"""`kitchen run rl` end to end on the noop adapters: metrics real and changing, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kitchen.launch import run_recipe
from kitchen.recipes.rl import rl

noop = pytest.importorskip("kitchen.adapters.noop")
if not hasattr(noop, "NoopTrainingClient"):
    pytest.skip("noop adapters not landed yet", allow_module_level=True)
pytest.importorskip("kitchen.adapters.metrics.jsonl", reason="JSONL metrics store not landed yet")


def test_rl_noop_reward_rises_and_checkpoints(tmp_path: Path) -> None:
    res = run_recipe(rl(), adapters="noop", run_dir=tmp_path / "r", overrides=["num_steps=30"])
    recs = res.run_dir.metrics()
    rewards = [r["reward"] for r in recs if "reward" in r]
    assert rewards and all(math.isfinite(x) for x in rewards)
    k = len(rewards) // 4
    assert sum(rewards[-k:]) / k > sum(rewards[:k]) / k
    assert res.run_dir.checkpoints()

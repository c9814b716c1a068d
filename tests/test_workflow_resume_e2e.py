"""`kitchen run rl|dpo|distill` on noop, killed with SIGKILL after a checkpoint and resumed
with `--resume`, ends with exactly the metrics history of an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kitchen.launch import run_recipe
from kitchen.recipes.registry import get_recipe
from kitchen.rundir import RunDir
from tests.kill9 import kill_after_checkpoints, local_checkpoints, strip_time

CASES = {
    "rl": ["num_steps=60", "checkpoint_every=3"],
    "dpo": ["epochs=8", "checkpoint_every=3"],
    "distill": ["num_steps=60", "checkpoint_every=3", "eval_every=10"],
}
KEYS = {"rl": "reward", "dpo": "dpo/margin", "distill": "kl"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_killed_and_resumed_equals_uninterrupted(name: str, tmp_path: Path) -> None:
    overrides = CASES[name]
    reference = run_recipe(
        get_recipe(name), adapters="noop", run_dir=tmp_path / "ref", overrides=overrides
    )
    expected = strip_time(reference.run_dir.metrics())
    assert any(KEYS[name] in r for r in expected)

    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "kitchen", "run", name, "--adapters", "noop", "--no-progress"]
    cmd += ["--run-dir", str(run_dir)]
    for o in overrides:
        cmd += ["--set", o]
    kill_after_checkpoints(cmd, local_checkpoints(run_dir), 2, poll=0.002)
    run = RunDir.open(run_dir)
    assert run.read_manifest()["status"] == "running"  # it died mid-run
    assert len(strip_time(run.metrics())) < len(expected)

    out = subprocess.run(
        [sys.executable, "-m", "kitchen", "run", name, "--resume", str(run_dir), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert run.read_manifest()["status"] == "completed"
    assert strip_time(run.metrics()) == expected

"""`kitchen run rl|dpo|distill` on noop, killed with SIGKILL after a checkpoint and resumed
with `--resume`, ends with exactly the metrics history of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kitchen.launch import run_recipe
from kitchen.recipes.registry import get_recipe
from kitchen.rundir import RunDir

CASES = {
    "rl": ["num_steps=60", "checkpoint_every=3"],
    "dpo": ["epochs=8", "checkpoint_every=3"],
    "distill": ["num_steps=60", "checkpoint_every=3", "eval_every=10"],
}
KEYS = {"rl": "reward", "dpo": "dpo/margin", "distill": "kl"}


def strip_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r.items() if k != "time" and not k.startswith("time/")} for r in records
    ]


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
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    index = run_dir / "checkpoints.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (index.exists() and len(index.read_text().splitlines()) >= 2):
            assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
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

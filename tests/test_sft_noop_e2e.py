"""The supervised recipe end to end on noop adapters, including kill -9 and resume."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kitchen.launch import run_recipe
from kitchen.recipes.builtin import sft
from kitchen.rundir import RunDir
from tests.kill9 import kill_after_checkpoints, local_checkpoints, strip_time


def test_cli_run_writes_events_metrics_and_checkpoints(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kitchen",
            "run",
            "sft",
            "--adapters",
            "noop",
            "--run-dir",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - started
    assert out.returncode == 0, out.stderr
    assert "run complete" in out.stdout
    rd = RunDir.open(run_dir)
    metrics = rd.metrics()
    steps = [r for r in metrics if "loss" in r]
    assert steps, "no per-step loss logged"
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1))
    assert any("val_loss" in r for r in metrics)
    events = [json.loads(line) for line in rd.events_path.read_text().splitlines()]
    assert events[0]["event"] == "workflow_start" and events[-1]["event"] == "workflow_end"
    assert any(
        e["event"] == "stage_end" and e["path"].endswith("/forward_backward") for e in events
    )
    assert rd.checkpoints(), "no checkpoint recorded"
    assert rd.read_manifest()["status"] == "completed"
    assert json.loads(rd.config_path.read_text())["epochs"] == 2
    # Loss falls: the noop model is a real (tiny) model, not random numbers.
    first, last = steps[0]["loss"], steps[-1]["loss"]
    assert last < first
    print(f"noop sft run took {elapsed:.2f}s")


def test_same_seed_same_history(tmp_path: Path) -> None:
    a = run_recipe(sft(), adapters="noop", run_dir=tmp_path / "a", overrides=["epochs=1"])
    b = run_recipe(sft(), adapters="noop", run_dir=tmp_path / "b", overrides=["epochs=1"])
    c = run_recipe(sft(), adapters="noop", run_dir=tmp_path / "c", overrides=["epochs=1", "seed=1"])
    ha, hb, hc = (strip_time(r.run_dir.metrics()) for r in (a, b, c))
    assert ha == hb
    assert ha != hc


LONG = ["epochs=6", "batch_size=2", "checkpoint_every=7", "eval_every=5"]


@pytest.mark.parametrize("n_checkpoints", [1, 3])
def test_kill_9_then_resume_gives_the_uninterrupted_history(
    tmp_path: Path, n_checkpoints: int
) -> None:
    reference = run_recipe(sft(), adapters="noop", run_dir=tmp_path / "ref", overrides=LONG)
    expected = strip_time(reference.run_dir.metrics())

    run_dir = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "kitchen",
        "run",
        "sft",
        "--adapters",
        "noop",
        "--no-progress",
        "--run-dir",
        str(run_dir),
    ]
    for o in LONG:
        cmd += ["--set", o]
    kill_after_checkpoints(cmd, local_checkpoints(run_dir), n_checkpoints, timeout=60)
    rd = RunDir.open(run_dir)
    assert rd.read_manifest()["status"] == "running"  # it really died mid-run
    partial = strip_time(rd.metrics())
    assert len(partial) < len(expected)

    out = subprocess.run(
        [sys.executable, "-m", "kitchen", "run", "sft", "--resume", str(run_dir), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert strip_time(rd.metrics()) == expected
    assert rd.read_manifest()["status"] == "completed"
    events = [json.loads(line) for line in rd.events_path.read_text().splitlines() if line.strip()]
    assert any(e["event"] == "resumed" for e in events)


def test_resume_refuses_config_changes(tmp_path: Path) -> None:
    run_recipe(sft(), adapters="noop", run_dir=tmp_path / "r", overrides=["epochs=1"])
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kitchen",
            "run",
            "sft",
            "--resume",
            str(tmp_path / "r"),
            "--set",
            "epochs=5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "cannot be combined with --resume" in out.stderr

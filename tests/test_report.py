"""kitchen report: loss/reward curves to a PNG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kitchen.adapters.metrics.jsonl import JsonlMetricsStore
from kitchen.rundir import RunDir

pytest.importorskip("matplotlib")


def make_run(root: Path, records: list[dict[str, float]]) -> RunDir:
    rd = RunDir.create(root)
    rd.write_config({"epochs": 1})
    rd.update_manifest(recipe="sft")
    store = JsonlMetricsStore(rd.metrics_path)
    for i, rec in enumerate(records, start=1):
        store.log(rec, step=i)
    return rd


def test_report_plots_loss_and_reward(tmp_path: Path) -> None:
    make_run(
        tmp_path / "r",
        [{"loss": 3.0 - 0.1 * i, "reward": 0.1 * i} for i in range(20)] + [{"val_loss": 1.5}],
    )
    out = tmp_path / "plots" / "curves.png"
    res = subprocess.run(
        [sys.executable, "-m", "kitchen", "report", str(tmp_path / "r"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "loss" in res.stdout and "val_loss" in res.stdout and "reward" in res.stdout
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_report_without_metrics_is_a_clean_error(tmp_path: Path) -> None:
    make_run(tmp_path / "r", [])
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "kitchen",
            "report",
            str(tmp_path / "r"),
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        res.returncode == 2 and "has no metrics yet" in res.stderr and "Traceback" not in res.stderr
    )
    assert not (tmp_path / "x.png").exists()

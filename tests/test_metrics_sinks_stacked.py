"""``kitchen run --metrics tensorboard,mlflow,wandb``: sinks stack, each holds the run's
metrics, and a run killed with SIGKILL and resumed continues the same MLflow and W&B runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kitchen.rundir import RunDir
from tests.kill9 import kill_after_checkpoints, local_checkpoints

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")

from mlflow.tracking import MlflowClient

from kitchen.adapters.metrics.tensorboard import TensorBoardMetricsStore
from kitchen.adapters.metrics.wandb import read_wandb_run

LONG = ["epochs=6", "batch_size=2", "checkpoint_every=7", "eval_every=5"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"}
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        env[var] = str(tmp_path / "wandb-home" / var.lower())
    env.pop("WANDB_MODE", None)
    env.pop("WANDB_API_KEY", None)
    return env


def _cmd(run_dir: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "kitchen", "run", "sft", "--no-progress", *extra]
    if "--resume" not in extra:
        cmd += ["--adapters", "noop", "--run-dir", str(run_dir)]
        cmd += ["--metrics", "tensorboard,mlflow,wandb"]
        for o in LONG:
            cmd += ["--set", o]
    return cmd


def _losses(records: list[dict[str, float]]) -> dict[int, float]:
    return {int(r["step"]): float(r["loss"]) for r in records if "loss" in r}


def _mlflow(run: RunDir) -> tuple[MlflowClient, str]:
    """A read-only view of the run's MLflow run (a store would mark it RUNNING again)."""
    ids = run.read_manifest()["metrics_sink_ids"]
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # as the kitchen sink sets it
    return MlflowClient(tracking_uri=(run.root / "mlruns").resolve().as_uri()), ids["mlflow"]


def _mlflow_losses(client: MlflowClient, run_id: str) -> dict[int, float]:
    # history in logging order: a step logged twice keeps its later value
    return {int(m.step): float(m.value) for m in client.get_metric_history(run_id, "loss")}


def test_stacked_sinks_hold_the_same_losses(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = subprocess.run(
        _cmd(run_dir), capture_output=True, text=True, timeout=300, env=_env(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    run = RunDir.open(run_dir)
    expected = _losses(run.metrics())
    assert len(expected) > 10

    tb = TensorBoardMetricsStore(run.root / "tensorboard")
    assert {s: pytest.approx(v, rel=1e-6) for s, v in _losses(tb.history()).items()} == expected
    tb.close()

    client, ml_id = _mlflow(run)
    assert _mlflow_losses(client, ml_id) == pytest.approx(expected)
    assert client.get_run(ml_id).info.status == "FINISHED"

    wb = read_wandb_run(next((run.root / "wandb").glob("offline-run-*")))
    assert wb["run_id"] == run.read_manifest()["metrics_sink_ids"]["wandb"]
    assert _losses(wb["history"]) == pytest.approx(expected)


def test_resume_continues_the_same_mlflow_and_wandb_runs(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_dir = tmp_path / "killed"
    kill_after_checkpoints(_cmd(run_dir), local_checkpoints(run_dir), 2, env=env)
    run = RunDir.open(run_dir)
    assert run.read_manifest()["status"] == "running"  # it really died mid-run
    ids_before = dict(run.read_manifest()["metrics_sink_ids"])
    assert set(ids_before) == {"mlflow", "wandb"}

    out = subprocess.run(
        _cmd(run_dir, "--resume", str(run_dir)),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    manifest = run.read_manifest()
    assert manifest["status"] == "completed"
    assert manifest["metrics_sinks"] == ["jsonl", "tensorboard", "mlflow", "wandb"]
    assert manifest["metrics_sink_ids"] == ids_before  # the same external runs, continued

    expected = _losses(run.metrics())
    client, ml_id = _mlflow(run)
    # one MLflow run holds every step; steps between the last checkpoint and the kill were
    # logged twice (MLflow keeps both values; the later one is the resumed run's)
    assert _mlflow_losses(client, ml_id) == pytest.approx(expected)
    assert client.get_run(ml_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_run(ml_id).info.experiment_id])) == 1

    # W&B: the resumed process reopened the same run id; its offline file holds the steps
    # after the checkpoint it resumed from
    # (W&B names each process's offline directory offline-run-<time>-<id>; the killed
    # process's file may be torn, which is W&B's business, not kitchen's)
    dirs = sorted((run.root / "wandb").glob("offline-run-*"))
    assert len(dirs) == 2 and all(d.name.endswith(f"-{ids_before['wandb']}") for d in dirs)
    runs = [read_wandb_run(dirs[-1])]
    assert runs[-1]["run_id"] == ids_before["wandb"]
    resumed = _losses(runs[-1]["history"])
    assert resumed and max(resumed) == max(expected)
    assert resumed == pytest.approx({s: expected[s] for s in resumed})

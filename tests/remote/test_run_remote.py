"""`kitchen run sft --adapters remote` against a `kitchen serve` the user started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("tinker")

from tests.kill9 import kill_after_checkpoints, local_checkpoints
from tests.remote.server import TOKEN, Server

ARGS = ["--backend", "noop", "--model-name", "noop-tiny", "--model-spec", '{"vocab_size": 512}']
SETS = ["epochs=2", "checkpoint_every=3", "eval_every=4"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Server(tmp_path_factory.mktemp("serve-run") / "data", args=ARGS) as srv:
        yield srv


def env(server: Server) -> dict[str, str]:
    # base_url and key from the environment, as a user would export them
    return {
        **os.environ,
        "TINKER_BASE_URL": server.url,
        "TINKER_API_KEY": TOKEN,
        "TINKER_TELEMETRY": "0",
    }


def cmd(*args: str) -> list[str]:
    sets = [x for s in SETS for x in ("--set", s)]
    return [sys.executable, "-m", "kitchen", "run", "sft", "--no-progress", *args, *sets]


def history(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]


def test_sft_runs_remotely_and_matches_the_local_noop_run(server: Server, tmp_path: Path) -> None:
    out = subprocess.run(
        cmd("--adapters", "remote", "--run-dir", str(tmp_path / "remote")),
        capture_output=True,
        text=True,
        env=env(server),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    local = subprocess.run(
        cmd("--adapters", "noop", "--run-dir", str(tmp_path / "local")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert local.returncode == 0, local.stderr
    remote_h, local_h = history(tmp_path / "remote"), history(tmp_path / "local")
    losses = [r["loss"] for r in remote_h if "loss" in r]
    assert len(losses) >= 10 and losses[-1] < losses[0]
    # Same model, seed and data behind the wire: the server adds no numerics.
    assert [r.get("loss") for r in remote_h] == pytest.approx([r.get("loss") for r in local_h])


def test_remote_run_killed_and_resumed_matches_uninterrupted(
    server: Server, tmp_path: Path
) -> None:
    ref = subprocess.run(
        cmd("--adapters", "remote", "--run-dir", str(tmp_path / "ref")),
        capture_output=True,
        text=True,
        env=env(server),
        timeout=300,
    )
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    kill_after_checkpoints(
        cmd("--adapters", "remote", "--run-dir", str(run)),
        local_checkpoints(run),
        2,
        env=env(server),
        poll=0.01,
    )
    index = run / "checkpoints.jsonl"
    record = json.loads(index.read_text().splitlines()[-1])
    assert record["ports"]["training"].startswith("tinker://")
    out = subprocess.run(
        [sys.executable, "-m", "kitchen", "run", "sft", "--resume", str(run), "--no-progress"],
        capture_output=True,
        text=True,
        env=env(server),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert history(run) == history(tmp_path / "ref")


@pytest.mark.parametrize(
    ("recipe", "sets", "key"),
    [("rl", ["num_steps=6"], "reward"), ("dpo", ["epochs=1"], "dpo/margin")],
)
def test_rl_and_dpo_run_remotely(
    server: Server, tmp_path: Path, recipe: str, sets: list[str], key: str
) -> None:
    args = [x for s in sets for x in ("--set", s)]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kitchen",
            "run",
            recipe,
            "--adapters",
            "remote",
            "--no-progress",
            "--run-dir",
            str(tmp_path / recipe),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env(server),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    values = [r[key] for r in history(tmp_path / recipe) if key in r]
    assert values and all(isinstance(v, float) for v in values)

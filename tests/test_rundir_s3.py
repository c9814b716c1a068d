"""Run directories on S3 (a real S3 API: moto's server on 127.0.0.1): kill -9, resume from S3."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kill9 import kill_after_checkpoints

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

BUCKET = "kitchen-runs"
LONG = ["epochs=6", "batch_size=2", "checkpoint_every=7", "eval_every=5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client(url).create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


def client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def env_for(url: str, cache: Path) -> dict[str, str]:
    # fsspec reads per-protocol options from FSSPEC_<PROTOCOL> (JSON): no kitchen-specific knob.
    opts = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"},
    }
    return {**os.environ, "FSSPEC_S3": json.dumps(opts), "KITCHEN_RUN_CACHE": str(cache)}


def read_remote_jsonl(url: str, key: str) -> list[dict[str, Any]]:
    try:
        body = client(url).get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    except client(url).exceptions.NoSuchKey:
        return []
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def strip_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


def test_kill_9_and_resume_from_s3_matches_an_uninterrupted_run(
    endpoint: str, tmp_path: Path
) -> None:
    from kitchen.launch import run_recipe
    from kitchen.recipes.builtin import sft

    expected = strip_time(
        run_recipe(sft(), run_dir=tmp_path / "local", overrides=LONG).run_dir.metrics()
    )

    url = f"s3://{BUCKET}/runs/killed"
    sets = [x for o in LONG for x in ("--set", o)]
    env1 = env_for(endpoint, tmp_path / "cache1")
    kill_after_checkpoints(
        [sys.executable, "-m", "kitchen", "run", "sft", "--no-progress", "--run-dir", url, *sets],
        lambda: len(read_remote_jsonl(endpoint, "runs/killed/checkpoints.jsonl")),
        2,
        env=env1,
        poll=0.02,
    )

    # Resume with a *fresh* working copy: everything must come back from S3.
    env2 = env_for(endpoint, tmp_path / "cache2")
    out = subprocess.run(
        [sys.executable, "-m", "kitchen", "run", "sft", "--resume", url, "--no-progress"],
        capture_output=True,
        text=True,
        env=env2,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert f"run complete: {url}" in out.stdout
    assert strip_time(read_remote_jsonl(endpoint, "runs/killed/metrics.jsonl")) == expected
    manifest = json.loads(
        client(endpoint).get_object(Bucket=BUCKET, Key="runs/killed/manifest.json")["Body"].read()
    )
    assert manifest["status"] == "completed"


def test_creating_over_an_existing_remote_run_is_refused(endpoint: str, tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/runs/twice"
    env = env_for(endpoint, tmp_path / "c")
    cmd = [
        sys.executable,
        "-m",
        "kitchen",
        "run",
        "sft",
        "--no-progress",
        "--run-dir",
        url,
        "--set",
        "epochs=1",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "kitchen",
            "run",
            "sft",
            "--resume",
            f"s3://{BUCKET}/runs/nothing-here",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 2 and "not a kitchen run directory" in missing.stderr

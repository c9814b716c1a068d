"""Crash a real `kitchen run` subprocess with SIGKILL once it has written N checkpoints, and
compare metric histories without their wall-clock fields: shared by the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def local_checkpoints(run_dir: Path) -> Callable[[], int]:
    """How many checkpoint records ``run_dir/checkpoints.jsonl`` holds right now."""
    index = run_dir / "checkpoints.jsonl"
    return lambda: len(index.read_text().splitlines()) if index.exists() else 0


def kill_after_checkpoints(
    cmd: Sequence[str],
    checkpoints: Callable[[], int],
    n: int,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    poll: float = 0.005,
    wait: float = 30,
    process_tree: bool = False,
) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``checkpoints()`` reaches ``n``, and assert that
    it died by that signal (not by finishing first, and within ``timeout`` seconds).

    ``process_tree``: SIGKILL ``cmd`` and every process it started, all at once (a launcher
    such as torchrun puts each rank in a session of its own), as when the machine dies."""
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    try:
        deadline = time.monotonic() + timeout
        while checkpoints() < n:
            assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"no checkpoint {n} in {timeout} s"
            time.sleep(poll)
        tree = _descendants(proc.pid) if process_tree else []
        proc.send_signal(signal.SIGKILL)
        for child in tree:
            _sigkill(child)
        proc.wait(timeout=wait)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _sigkill(process: Any) -> None:
    import psutil

    try:
        process.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass


def strip_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metric records without wall-clock fields (the only values allowed to differ)."""
    return [
        {k: v for k, v in r.items() if k != "time" and not k.startswith("time/")} for r in records
    ]

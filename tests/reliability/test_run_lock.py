"""No lost data: one writer per run directory, no overwriting of foreign directories or of a
run's records by another command's output."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kitchen.errors import UsageError
from kitchen.launch import run_recipe
from kitchen.recipes.registry import get_recipe
from kitchen.rundir import RunDir, refuse_run_records
from kitchen.runlock import LOCK_NAME, RunInUse, RunLock
from tests.kill9 import kill_after_checkpoints, local_checkpoints, strip_time

OVERRIDES = ["epochs=40", "checkpoint_every=20"]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kitchen", *args, "--no-progress"]


def _run_cmd(run_dir: Path) -> list[str]:
    cmd = _cmd("run", "sft", "--run-dir", str(run_dir))
    for o in OVERRIDES:
        cmd += ["--set", o]
    return cmd


def _wait_for_lock(proc: subprocess.Popen[str], run_dir: Path) -> None:
    lock = run_dir / LOCK_NAME
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text().startswith(f"{proc.pid} ")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "first writer never took the lock"
        time.sleep(0.005)


def _snapshot(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def _race(first_cmd: list[str], second_cmd: list[str], run_dir: Path) -> tuple[int, str, int]:
    """Start ``first_cmd``; once it holds the lock, run ``second_cmd`` to completion."""
    first = subprocess.Popen(first_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lock(first, run_dir)
        second = subprocess.run(second_cmd, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first writer finished before the race: make it longer"
        first.wait(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    return second.returncode, second.stderr, first.returncode


def test_two_writers_on_one_run_dir_one_wins_and_the_run_is_intact(tmp_path: Path) -> None:
    reference = run_recipe(get_recipe("sft"), run_dir=tmp_path / "ref", overrides=OVERRIDES)
    expected = strip_time(reference.run_dir.metrics())

    run_dir = tmp_path / "shared"
    first = subprocess.Popen(
        _run_cmd(run_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_lock(first, run_dir)
        second = subprocess.run(_run_cmd(run_dir), capture_output=True, text=True, timeout=120)
        still_running = first.poll() is None
        first.wait(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert still_running, "the first writer finished before the race: make the run longer"
    assert first.returncode == 0
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip() == second.stderr.strip().splitlines()[0]  # one line
    assert f"is in use by pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    run = RunDir.open(run_dir)
    assert run.read_manifest()["status"] == "completed"
    assert strip_time(run.metrics()) == expected  # not twice the records


def test_two_resumes_at_once_one_wins_and_history_equals_uninterrupted(tmp_path: Path) -> None:
    reference = run_recipe(get_recipe("sft"), run_dir=tmp_path / "ref", overrides=OVERRIDES)
    expected = strip_time(reference.run_dir.metrics())
    run_dir = tmp_path / "killed"
    # kill -9 leaves the lock file with a dead pid: the resume below must take it over.
    kill_after_checkpoints(_run_cmd(run_dir), local_checkpoints(run_dir), 1, poll=0.002)
    assert (run_dir / LOCK_NAME).exists()
    resume = _cmd("run", "sft", "--resume", str(run_dir))
    code, err, first_code = _race(resume, resume, run_dir)
    assert first_code == 0
    assert code == 2 and "is in use by pid" in err, err
    assert strip_time(RunDir.open(run_dir).metrics()) == expected


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    code = "import os; print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True).stdout
    dead = dead.strip()
    tmp_path.joinpath(LOCK_NAME).write_text(f"{dead} {os.uname().nodename}\n")
    lock = RunLock(tmp_path)
    lock.acquire()  # flock is free: the holder is gone
    lock._check_pid()  # and the pid fallback (no flock) agrees: the pid is dead
    assert tmp_path.joinpath(LOCK_NAME).read_text().split()[0] == str(os.getpid())
    lock.release()


def test_a_live_holder_is_refused_in_process_too(tmp_path: Path) -> None:
    holder = RunLock(tmp_path).acquire()
    try:
        with pytest.raises(RunInUse, match=f"in use by pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.release()
    RunLock(tmp_path).acquire().release()  # free again once released


def test_pid_fallback_refuses_a_live_pid(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tmp_path.joinpath(LOCK_NAME).write_text(f"{sleeper.pid} {os.uname().nodename}\n")
        with pytest.raises(RunInUse, match=f"pid {sleeper.pid}"):
            RunLock(tmp_path)._check_pid()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_non_empty_foreign_run_dir_is_refused_and_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json.bak").write_text("{}")
    (mine / "metrics.jsonl").write_text('{"my": 1}\n')
    before = _snapshot(mine)
    with pytest.raises(UsageError, match="not empty and is not a kitchen run"):
        run_recipe(get_recipe("sft"), run_dir=mine)
    assert _snapshot(mine) == before
    assert sorted(p.name for p in mine.iterdir()) == ["config.json.bak", "metrics.jsonl"]


@pytest.mark.parametrize(
    "rel", ["", "metrics.jsonl", "config.json", "manifest.json", "checkpoints/x.png"]
)
def test_outputs_that_would_replace_run_records_are_refused(tmp_path: Path, rel: str) -> None:
    run = run_recipe(get_recipe("sft"), run_dir=tmp_path / "r", overrides=["epochs=1"]).run_dir
    before = _snapshot(run.root)
    with pytest.raises(UsageError, match="would replace the run's records"):
        refuse_run_records(run.root / rel if rel else run.root)
    refuse_run_records(run.root / "report.png")  # a new file in the run is fine
    refuse_run_records(tmp_path / "elsewhere.png")
    assert _snapshot(run.root) == before

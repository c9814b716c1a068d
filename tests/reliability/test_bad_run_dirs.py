"""Damaged run directories, odd locations and bad output paths: one-line errors, nothing
lost; a damaged newest checkpoint falls back to the previous whole one."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitchen.launch import run_recipe
from kitchen.recipes.registry import get_recipe
from kitchen.rundir import RunDir
from kitchen.runlock import LOCK_NAME
from tests.kill9 import strip_time
from tests.reliability.cli import assert_clean_failure, invoke, snapshot

OVERRIDES = ["epochs=3", "checkpoint_every=5"]
FAST = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed noop sft run with several checkpoints (copied per test)."""
    root = tmp_path_factory.mktemp("finished") / "run"
    run_recipe(get_recipe("sft"), run_dir=root, overrides=OVERRIDES)
    return root


def _crashed_copy(finished: Path, dest: Path) -> Path:
    """A copy of ``finished`` that looks like it died mid-run (status running)."""
    import shutil

    shutil.copytree(finished, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["status"] = "running"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def _records(root: Path) -> dict[str, str]:
    return {k: v for k, v in snapshot(root).items() if k != LOCK_NAME}


RECORD_FILES = ["checkpoints.jsonl", "metrics.jsonl", "config.json", "manifest.json"]
GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=40).filter(lambda b: b.strip() and b"\n" not in b),
    st.sampled_from([b"[1, 2]", b'"a string"', b"{not json", b"\xff\xfe\x00", b"null"]),
)


def test_garbage_in_any_record_file_is_a_clean_error(
    finished: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    @FAST
    @given(name=st.sampled_from(RECORD_FILES), garbage=GARBAGE, seed=st.integers(0, 10**6))
    def check(name: str, garbage: bytes, seed: int) -> None:
        run = _crashed_copy(finished, tmp_path_factory.mktemp("g") / "run")
        path = run / name
        lines = path.read_bytes().splitlines()
        if name.endswith(".jsonl"):  # a garbage line that is not the (tolerated) torn tail
            lines.insert(random.Random(seed).randrange(len(lines)), garbage)
            path.write_bytes(b"\n".join(lines) + b"\n")
        else:
            path.write_bytes(garbage)
        before = _records(run)
        result = invoke(["run", "sft", "--resume", str(run), "--no-progress"])
        assert_clean_failure(result, name)
        assert _records(run) == before

    check()


@pytest.mark.parametrize("damage", ["empty_state", "torn_state", "empty_port", "missing_port"])
def test_damaged_newest_checkpoint_falls_back_and_says_so(
    finished: Path, tmp_path: Path, damage: str
) -> None:
    expected = strip_time(RunDir.open(finished).metrics())
    run = _crashed_copy(finished, tmp_path / "run")
    newest = json.loads((run / "checkpoints.jsonl").read_text().splitlines()[-1])["name"]
    ckpt = run / "checkpoints" / newest
    if damage == "empty_state":
        (ckpt / "run_state.json").write_bytes(b"")
    elif damage == "torn_state":
        (ckpt / "run_state.json").write_bytes(b'{"state": {"st')
    elif damage == "empty_port":
        (ckpt / "noop_state.json").write_bytes(b"")
    else:
        (ckpt / "noop_state.json").unlink()
    result = invoke(["run", "sft", "--resume", str(run), "--no-progress"])
    assert result.code == 0, result.err
    assert f"skipping damaged checkpoint(s) {newest}" in result.err
    assert "resuming from checkpoint ckpt-" in result.err
    assert strip_time(RunDir.open(run).metrics()) == expected  # nothing lost, nothing doubled


def test_relative_run_dir_resumed_from_another_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    ref = run_recipe(get_recipe("sft"), run_dir="rel", overrides=OVERRIDES)
    expected = strip_time(ref.run_dir.metrics())
    records = (tmp_path / "a" / "rel" / "checkpoints.jsonl").read_text()
    assert "run:checkpoints/" in records  # stored relative to the run, not to the cwd
    _crashed_copy(tmp_path / "a" / "rel", tmp_path / "a" / "crashed")
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    result = invoke(["run", "sft", "--resume", "../a/crashed", "--no-progress"])
    assert result.code == 0, result.err
    assert strip_time(RunDir.open(tmp_path / "a" / "crashed").metrics()) == expected


def test_epochs_lowered_below_the_checkpoint(finished: Path, tmp_path: Path) -> None:
    run = _crashed_copy(finished, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["epochs"] = 1  # the newest checkpoint is in epoch 2
    (run / "config.json").write_text(json.dumps(config))
    before = _records(run)
    result = invoke(["run", "sft", "--resume", str(run), "--no-progress"])
    assert_clean_failure(result, "epoch", "epochs", code=3)
    assert RunDir.open(run).read_manifest()["status"] == "failed"
    after = _records(run)
    for name in ("metrics.jsonl", "checkpoints.jsonl", "config.json"):
        assert after[name] == before[name]


@pytest.mark.parametrize(
    ("where", "needle"),
    [
        ("/proc/kitchen-run", "cannot create run directory"),
        ("x" * 300, "File name too long"),
        ("nosuchscheme://bucket/run", "URL scheme 'nosuchscheme'"),
        ("FILE", "is a file"),
    ],
)
def test_unusable_run_locations(tmp_path: Path, where: str, needle: str) -> None:
    if where == "FILE":
        where = str(tmp_path / "file")
        Path(where).write_text("mine")
    result = invoke(["run", "sft", "--run-dir", where, "--no-progress"])
    assert_clean_failure(result, needle)
    if where.endswith("file"):
        assert Path(where).read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_read_only_location(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    result = invoke(["run", "sft", "--run-dir", str(ro / "run"), "--no-progress"])
    assert_clean_failure(result, "cannot create run directory")


def test_report_and_describe_outputs_and_records(finished: Path, tmp_path: Path) -> None:
    run = _crashed_copy(finished, tmp_path / "run")
    before = _records(run)
    a_file = tmp_path / "f"
    a_file.write_text("x")
    cases = [
        (["report", str(run), "--out", str(run / "metrics.jsonl")], "would replace"),
        (["report", str(run), "--out", str(run / "checkpoints" / "x.png")], "would replace"),
        (["report", str(run), "--out", str(run)], "would replace"),
        (["report", str(run), "--out", str(tmp_path)], "is a directory"),
        (["report", str(run), "--out", str(a_file / "x.png")], "is a file"),
        (["export", str(run), "--out", str(run / "config.json")], "would replace"),
        (["export", str(run), "--out", str(a_file / "out")], "is a file"),
        (["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.png")], "nope"),
        (["describe", "--cache", str(a_file)], "is a file"),
    ]
    for argv, needle in cases:
        assert_clean_failure(invoke(argv), needle)
    assert _records(run) == before and a_file.read_text() == "x"


def test_describe_cache_with_wrong_shaped_records(finished: Path, tmp_path: Path) -> None:
    run = _crashed_copy(finished, tmp_path / "run")
    for content, needle in [
        ('{"path": 3, "hit": true, "key": "k", "components": {}}\n{}\n', "line 1"),
        ('{"hit": "yes"}\n{"x": 1}\n', "not a stage-cache record"),
        ("garbage\n{}\n", "line 1"),
    ]:
        (run / "cache.jsonl").write_text(content)
        assert_clean_failure(invoke(["describe", "--cache", str(run)]), "cache.jsonl", needle)


def test_report_with_odd_metric_records(finished: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = _crashed_copy(finished, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"loss": "high", "step": "x"}\n{"loss": 1.0, "step": null}\n{"loss": true}\n')
    out = invoke(["report", str(run), "--out", str(tmp_path / "r.png")])
    assert out.code == 0, out.err
    assert (tmp_path / "r.png").stat().st_size > 0

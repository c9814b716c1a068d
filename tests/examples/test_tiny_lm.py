"""Cookbook example 3 (tiny_lm) on its quick preset: a full run, exit codes, kill -9 + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.hf
pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-m", "examples.tiny_lm", "--preset", "quick"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def metrics(out: Path) -> dict:
    return json.loads((out / "training_metrics.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "ref"
    res = run("--epochs", "4", "--output-dir", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    for header in ("[1/5] prerequisites", "[2/5] corpus", "[3/5] tokenizer", "[4/5] training"):
        assert header in res.stdout
    assert "[5/5] validation" in res.stdout and "artifacts:" in res.stdout
    return out


def test_full_run_writes_training_metrics(reference: Path) -> None:
    doc = metrics(reference)
    assert doc["preset"] == "quick"
    assert doc["hyperparameters"]["epochs"] == 4 and doc["hyperparameters"]["vocab_size"] == 320
    history = doc["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert all(h["val_loss"] is not None and h["steps"] > 0 for h in history)
    final = doc["final"]
    assert final["val_loss"] < final["val_loss_untrained"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    val = doc["validation"]
    assert val["num_generations"] == 5 and val["peak_rss_mb"] > 0
    assert val["latency_ms_p95"] >= val["latency_ms_p50"] > 0
    # the samples come from a fresh inference process, lighter than the training one
    assert val["inference_process"] is True
    assert 0 < val["peak_rss_mb"] < val["training_peak_rss_mb"]
    assert val["budget"]["met"] == (
        val["peak_rss_mb"] <= val["budget"]["peak_rss_mb"]
        and val["latency_ms_p95"] <= val["budget"]["latency_ms_p95"]
    )
    assert (reference / "tokenizer" / "tokenizer.json").is_file()
    assert (reference / "corpus" / "corpus.json").is_file()


def test_exit_codes_name_the_problem(
    tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from examples.tiny_lm.cli import main

    def code(*args: str) -> tuple[int, str]:
        rc = main(["--preset", "quick", *args])
        return rc, capsys.readouterr().err

    # a run already in the directory: resume problem (9)
    rc, err = code("--output-dir", str(reference))
    assert rc == 9 and "--resume" in err
    # --resume of a completed run: 9 too
    rc, err = code("--resume", "--output-dir", str(reference))
    assert rc == 9 and "already completed" in err
    # --resume with nothing to resume: 9
    rc, err = code("--resume", "--output-dir", str(tmp_path / "none"))
    assert rc == 9 and "no run" in err
    # --skip-tokenizer with nothing to reuse: tokenizer problem (6)
    rc, err = code("--skip-tokenizer", "--output-dir", str(tmp_path / "a"))
    assert rc == 6 and "run once without --skip-tokenizer" in err
    # a corpus directory without train.txt: corpus problem (5)
    rc, err = code("--corpus", str(tmp_path), "--output-dir", str(tmp_path / "b"))
    assert rc == 5 and "train.txt" in err
    # a disk-space requirement that cannot be met (4)
    rc, err = code("--min-free-mb", str(10**12), "--output-dir", str(tmp_path / "c"))
    assert rc == 4 and "free" in err


def test_skip_flags_reuse_corpus_and_tokenizer(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "reuse"
    out.mkdir()
    for name in ("corpus", "tokenizer"):
        subprocess.run(["cp", "-r", str(reference / name), str(out / name)], check=True)
    res = run("--epochs", "1", "--skip-corpus", "--skip-tokenizer", "--output-dir", str(out))
    assert res.returncode == 0, res.stderr
    assert "corpus: reusing" in res.stdout and "tokenizer: reusing BPE" in res.stdout
    assert (out / "tokenizer" / "tokenizer.json").read_bytes() == (
        reference / "tokenizer" / "tokenizer.json"
    ).read_bytes()


def test_kill_9_then_resume_matches_the_uninterrupted_run(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*CMD, "--epochs", "4", "--output-dir", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    index = out / "run" / "checkpoints.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if index.is_file() and index.read_text().strip():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "training_metrics.json").exists()

    res = run("--resume", "--output-dir", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resuming" in res.stdout
    resumed, ref = metrics(out), metrics(reference)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    # exact resume: the same losses, epoch by epoch, as the run that was never interrupted
    assert resumed["final"]["val_loss"] == pytest.approx(ref["final"]["val_loss"], abs=1e-9)
    for a, b in zip(resumed["history"], ref["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-9)

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


def test_bilingual_corpus_is_seeded_and_holds_both_languages(tmp_path: Path) -> None:
    if str(ROOT) not in sys.path:  # `examples` is a directory of the repo, not a package
        sys.path.insert(0, str(ROOT))
    from examples.tiny_lm.bilingual import spanish_lines, write_bilingual

    counts = write_bilingual(tmp_path / "a")
    write_bilingual(tmp_path / "b")
    for name in counts:  # byte-identical for the same seed
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    es = (tmp_path / "a" / "valid_es.txt").read_text().splitlines()
    en = (tmp_path / "a" / "valid_en.txt").read_text().splitlines()
    train = set((tmp_path / "a" / "train.txt").read_text().splitlines())
    assert set(spanish_lines(5)) <= train  # the Spanish training lines are in the mix
    assert en and es and counts["valid.txt"] == len(en) + len(es)
    assert not set(es) & train  # Spanish validation lines are held out
    assert all(" la " in f" {x} " or " el " in f" {x} " for x in es[:20])
    assert not any(" el " in f" {x} " for x in en)
    # about the same amount of text in each language
    ratio = sum(map(len, es)) / sum(map(len, en))
    assert 0.5 < ratio < 2.0


def test_bilingual_run_reports_loss_and_samples_per_language(tmp_path: Path) -> None:
    out = tmp_path / "bi"
    res = run("--bilingual", "--epochs", "1", "--output-dir", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    doc = metrics(out)
    by_lang = doc["val_loss_by_language"]
    assert set(by_lang) == {"en", "es"} and all(0 < v < 10 for v in by_lang.values())
    assert set(doc["corpus"]["valid_rows_by_language"]) == {"en", "es"}
    prompts = {s["prompt"] for s in doc["validation"]["samples"]}
    assert {"The soup", "La sopa"} <= prompts
    bad = run("--bilingual", "--corpus", str(tmp_path), "--output-dir", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--bilingual builds its own corpus" in bad.stderr

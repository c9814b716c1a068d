"""Cookbook example 1 end to end on its shipped corpus: twice, the second all cache hits."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import pytest

from kitchen.io import read_jsonl

pytest.importorskip("datasketch")
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is a directory of the repo, not an installed package
    sys.path.insert(0, str(ROOT))
pipeline = importlib.import_module("examples.corpus_qlora.pipeline")


def test_example_runs_end_to_end_and_reruns_from_cache(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with pipeline.serve_docs(pipeline.CORPUS / "docs" / "http") as url:
        t0 = time.perf_counter()
        first = pipeline.run_data(work, url)
        t1 = time.perf_counter()
        second = pipeline.run_data(work, url)
        t2 = time.perf_counter()
    print(f"\nfirst run {t1 - t0:.2f}s, second run {t2 - t1:.2f}s (all cache hits)")
    print(pipeline.summary(work, second))
    assert [c["hit"] for c in first["cache"]] == [False] * 9
    assert [c["hit"] for c in second["cache"]] == [True] * 9
    assert first["state"]["dataset"] == second["state"]["dataset"] == str(work / "dataset" / "v1")

    # dedup: planted exact copy (compat/response.py) and near copies (legacy_request, faq-0.1)
    dedup = json.loads((work / "data" / "dedup" / "dedup.json").read_text())
    assert dedup["stats"] == {"before": 12, "after": 9, "exact_dropped": 1, "near_dropped": 2}
    dropped = {d["id"]: (d["duplicate_of"], d["kind"]) for d in dedup["dropped"]}
    assert dropped == {
        "tinyroute-code/tinyroute/compat/response.py": (
            "tinyroute-code/tinyroute/response.py",
            "exact",
        ),
        "tinyroute-code/tinyroute/compat/legacy_request.py": (
            "tinyroute-code/tinyroute/request.py",
            "near",
        ),
        "faq/faq-0.1.md": ("faq/faq.md", "near"),
    }
    # nothing else was lost: every normalised document is kept or mapped to a kept one
    normalised = {d["id"] for d in read_jsonl(work / "data" / "normalised" / "documents.jsonl")}
    kept = {d["id"] for d in read_jsonl(work / "data" / "dedup" / "documents.jsonl")}
    assert kept | set(dropped) == normalised and not kept & set(dropped)
    assert all(dup in kept for dup, _ in dropped.values())

    # bad sources: the unreachable one and the binary file are rejected with reasons
    fetch_rej = read_jsonl(work / "data" / "fetch" / "rejected.jsonl")
    assert [r["source"] for r in fetch_rej] == ["changelog"]
    assert "cannot reach" in fetch_rej[0]["reason"]
    norm_rej = read_jsonl(work / "data" / "normalised" / "rejected.jsonl")
    assert [r["id"] for r in norm_rej] == ["faq/logo.png"]

    # licence headers stripped, CRLF gone
    docs = {d["id"]: d["text"] for d in read_jsonl(work / "data" / "dedup" / "documents.jsonl")}
    assert all("Copyright" not in t and "\r" not in t for t in docs.values())

    # gate: the docs snippet with a syntax error is rejected by py_compile
    report = json.loads((work / "data" / "gate" / "report.json").read_text())
    rejected = read_jsonl(work / "data" / "gate" / "rejected.jsonl")
    assert report["rejected"] == len(rejected) >= 1
    assert any("SyntaxError" in r["reasons"][0]["reason"] for r in rejected)
    assert report["checks"]["py_compile"]["checked"] > 0

    # package: versioned dataset with provenance on every row
    ds = work / "dataset" / "v1"
    manifest = json.loads((ds / "manifest.json").read_text())
    rows = [r for s in ("train", "valid", "test") for r in read_jsonl(ds / f"{s}.jsonl")]
    assert len(rows) == manifest["stats"]["rows"] == report["passed"]
    assert {s["name"] for s in manifest["sources"]} == {
        "tinyroute-code",
        "guide",
        "middleware-docs",
        "faq",
    }
    for r in rows:
        p = r["provenance"]
        assert p["source_file"] and p["transformation"] and p["generator"]["kind"]
    teacher = [r for r in rows if r["provenance"]["generator"]["kind"] == "teacher"]
    assert teacher and all(
        r["provenance"]["generator"]["model"] == "extractive-teacher-v1" for r in teacher
    )
    index = json.loads((work / "dataset" / "index.json").read_text())
    assert [v["version"] for v in index["versions"]] == [1]


def test_cli_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pipeline.main(["--work-dir", str(tmp_path / "w"), "--shards", "1"]) == 0
    out = capsys.readouterr().out
    assert "dataset:" in out and "version 1" in out

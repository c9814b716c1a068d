"""Cookbook example 4 (codebase_adapters): chunking, background jobs, registry, events,
memory guard and retries. Orchestration runs on the noop adapters; one hf job trains and
exports a real LoRA adapter."""

from __future__ import annotations

import importlib
import json
import sys
import threading
from pathlib import Path

import pytest

from kitchen.telemetry import MemoryEventSink

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is a directory of the repo, not an installed package
    sys.path.insert(0, str(ROOT))
chunking = importlib.import_module("examples.codebase_adapters.chunking")
service_mod = importlib.import_module("examples.codebase_adapters.service")
cli = importlib.import_module("examples.codebase_adapters.cli")
PROJECTS = cli.PROJECTS


def test_chunking_with_ast_fallback_and_tree_sitter_agree() -> None:
    chunks = chunking.chunk_tree(PROJECTS / "calc", parser="ast", max_chars=600)
    names = {(c.path, c.name) for c in chunks}
    assert ("calc/tokens.py", "tokenize") in names
    assert ("calc/evaluate.py", "evaluate") in names
    assert ("calc/evaluate.py", "Parser.expr") in names  # a long class is split by method
    row = next(c for c in chunks if c.name == "tokenize").row()
    assert row["prompt"].startswith("# calc/calc/tokens.py\ndef tokenize(text: str)")
    assert '"""Numbers and operators' in row["prompt"] and "for ch in text" in row["completion"]
    if chunking.tree_sitter_available():
        ts = chunking.chunk_tree(PROJECTS / "calc", parser="tree-sitter", max_chars=600)
        assert [c.row() for c in ts] == [c.row() for c in chunks]
    # a file that does not parse still becomes (text) chunks with the ast fallback
    bad = chunking.chunk_file("p", "bad.py", "def broken(:\n    pass\n", parser="ast")
    assert [c.kind for c in bad] == ["text"]


def test_background_jobs_registry_events_and_notifications(tmp_path: Path) -> None:
    sink = MemoryEventSink()
    notified: list[tuple[str, str]] = []
    release = threading.Event()

    def probe() -> float:  # the first job waits until the test has seen the queue
        release.wait(10)
        return 1e9

    svc = service_mod.AdapterService(
        tmp_path,
        adapters="noop",
        epochs=2,
        batch_size=2,
        progress_interval=0.0,
        event_sinks=[sink],
        memory_probe=probe,
        on_complete=lambda p, rec: notified.append((p, rec["state"])),
    )
    try:
        futs = [svc.submit(d.name, d) for d in sorted(PROJECTS.iterdir())]
        # submit returned at once: nothing has finished, the registry says queued
        on_disk = service_mod.StatusRegistry.read(tmp_path / "status.json")
        assert {r["state"] for r in on_disk.values()} <= {"queued", "training"}
        release.set()
        for f in futs:
            f.result(60)
    finally:
        svc.close()
    records = service_mod.StatusRegistry.read(tmp_path / "status.json")
    assert set(records) == {"calc", "textkit"}
    for rec in records.values():
        assert rec["state"] == "done" and rec["progress"]["fraction"] == 1.0
        assert rec["chunks"] > 0 and Path(rec["adapter"]).exists()
    assert sorted(notified) == [("calc", "done"), ("textkit", "done")]
    events = [r["event"] for r in sink.records]
    for name in ("adapter_queued", "adapter_started", "adapter_progress", "adapter_done"):
        assert name in events
    progress = [r for r in sink.records if r["event"] == "adapter_progress"]
    assert progress[-1]["fraction"] == 1.0 and all(0 < r["fraction"] <= 1 for r in progress)
    # the same events went to events.jsonl, and the CLI reads the registry
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert sum(json.loads(x)["event"] == "adapter_done" for x in lines) == 2
    assert cli.main(["status", "--work-dir", str(tmp_path), "calc"]) == 0


def test_memory_guard_refuses_with_a_clear_reason(tmp_path: Path) -> None:
    svc = service_mod.AdapterService(
        tmp_path, adapters="noop", memory_mb=4096, reserve_mb=0, memory_probe=lambda: 1000.0
    )
    try:
        rec = svc.submit("calc", PROJECTS / "calc").result(30)
    finally:
        svc.close()
    assert rec["state"] == "failed"
    assert rec["reason"].startswith("memory guard: 1000 MB available, 4096 MB needed")
    assert not (tmp_path / "calc" / "run").exists()  # refused before anything started


def test_transient_port_errors_are_retried_with_backoff_and_resume(tmp_path: Path) -> None:
    sink = MemoryEventSink()
    svc = service_mod.AdapterService(
        tmp_path,
        adapters="noop",
        epochs=2,
        batch_size=2,
        backoff_s=0.01,
        event_sinks=[sink],
        faults={
            "calc": service_mod.FaultInjector(at_call=5, failing_attempts=2),
            "textkit": service_mod.FaultInjector(at_call=1, failing_attempts=9),
        },
        attempts=3,
    )
    try:
        ok = svc.submit("calc", PROJECTS / "calc").result(60)
        bad = svc.submit("textkit", PROJECTS / "textkit").result(60)
    finally:
        svc.close()
    assert ok["state"] == "done" and ok["attempts"] == 3
    retries = [r for r in sink.records if r["event"] == "adapter_retry"]
    assert [r["attempt"] for r in retries if r["project"] == "calc"] == [1, 2]
    assert all("TransientError" in r["error"] for r in retries)
    # the retry resumed the run from its checkpoint instead of starting over
    manifest = json.loads((tmp_path / "calc" / "run" / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest.get("resumed_at")
    assert bad["state"] == "failed" and "injected transient failure" in bad["reason"]
    assert bad["attempts"] == 3


def test_permanent_errors_fail_at_once(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    svc = service_mod.AdapterService(tmp_path / "w", adapters="noop")
    try:
        rec = svc.submit("empty", empty).result(30)
    finally:
        svc.close()
    assert rec["state"] == "failed" and "no Python chunks" in rec["reason"]


@pytest.mark.hf
def test_one_hf_lora_adapter(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    svc = service_mod.AdapterService(tmp_path, adapters="hf", epochs=1, batch_size=4)
    try:
        rec = svc.submit("textkit", PROJECTS / "textkit").result(120)
    finally:
        svc.close()
    assert rec["state"] == "done", rec.get("reason")
    adapter = Path(rec["adapter"])
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "adapter_config.json").is_file()

"""The data stages as a cached workflow: re-runs do no work, changes re-run only downstream."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import yaml

from kitchen.adapters.noop import NoopTokenizer
from kitchen.context import Context
from kitchen.data.stages import (
    CommandCheck,
    Dedup,
    Fetch,
    Gate,
    Generate,
    NonEmpty,
    Normalise,
    Package,
    TeacherTask,
    Template,
    load_split,
    sharded,
)
from kitchen.data.stages.manifest import write_manifest
from kitchen.dsl import stage, workflow
from kitchen.errors import DataError, UsageError
from kitchen.io import read_jsonl
from kitchen.ports.bundle import Ports
from kitchen.runner import Runner, StageCache
from tests.data.helpers import CannedTeacher, DirBlobStore

pytest.importorskip("datasketch")

CODE = '''# Copyright 2024 A. Licensed under MIT.
def add(a, b):
    """Add two numbers."""
    return a + b


def broken(x):
    """Return x doubled."""
    return x * 2
'''

TEMPLATES = (
    Template(
        "impl", "python_functions", "Implement `{signature}`: {docstring}", "{source}", "python"
    ),
    Template("doc", "markdown_sections", "Explain {heading}.", "{body}"),
)
TEACHER = (
    TeacherTask(
        "explain", "python_functions", "Explain `{name}`.", "Code:\n{source}\nQ: {instruction}\nA:"
    ),
)


def build(tmp: Path, gate_checks: tuple = (NonEmpty(),), templates: tuple = TEMPLATES):
    d = tmp / "data"
    return workflow(
        "data",
        stage(Fetch(out_dir=str(d / "fetch"))),
        *sharded(Normalise(out_dir=str(d / "norm")), 2),
        stage(Dedup(out_dir=str(d / "dedup"))),
        stage(Generate(out_dir=str(d / "gen"), templates=templates, teacher=TEACHER)),
        *sharded(Gate(out_dir=str(d / "gate"), checks=gate_checks), 3),
        stage(Package(out_dir=str(tmp / "dataset"), sources_input="fetched", seed=3)),
    )


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "math.py").write_text(CODE)
    (src / "math_copy.py").write_text(CODE.replace("\n", "\r\n"))
    (src / "guide.md").write_text("# Guide\n\n## Adding\n\nUse add(a, b).\n\n## More\n\nSoon.\n")
    (tmp_path / "sources.yaml").write_text(
        yaml.safe_dump({"sources": [{"name": "lib", "kind": "url", "url": src.as_uri()}]})
    )
    return tmp_path


def run(tmp: Path, wf, teacher: CannedTeacher | None = None) -> tuple[Context, StageCache]:
    tok = NoopTokenizer()
    teacher = teacher or CannedTeacher(tok)
    ports = Ports(blob=DirBlobStore(tmp / "blobs"), tokenizer=tok, extra={"teacher": teacher})
    ctx = Context(ports=ports, state={"sources": str(tmp / "sources.yaml")})
    cache = StageCache(tmp / "cache")
    Runner(cache=cache).run(wf, ctx)
    return ctx, cache


def misses(cache: StageCache) -> list[str]:
    return [d.path for d in cache.decisions if not d.hit]


def test_rerun_does_no_work_and_changes_rerun_only_downstream(corpus: Path) -> None:
    tok = NoopTokenizer()
    teacher = CannedTeacher(tok)
    ctx, cache = run(corpus, build(corpus), teacher)
    assert len(misses(cache)) == len(cache.decisions) == 10
    assert teacher.calls == 2
    ds = Path(ctx.state["dataset"])
    assert ds.name == "v1"

    ctx2, cache2 = run(corpus, build(corpus), teacher)
    assert misses(cache2) == [] and teacher.calls == 2  # the teacher was not asked again
    assert ctx2.state["dataset"] == str(ds)

    # a new gate check: only the gate shards, their merge and package run again
    py = CommandCheck("py_compile", (sys.executable, "-m", "py_compile", "{file}"))
    _, cache3 = run(corpus, build(corpus, gate_checks=(NonEmpty(), py)), teacher)
    assert sorted(misses(cache3)) == sorted(
        [
            "gate_shards/shard0/gate",
            "gate_shards/shard1/gate",
            "gate_shards/shard2/gate",
            "gate_merge",
            "package",
        ]
    )
    assert teacher.calls == 2

    # a template change re-runs generate and what follows, not normalise/dedup
    _, cache4 = run(corpus, build(corpus, templates=TEMPLATES[:1]), teacher)
    assert "generate" in misses(cache4) and "dedup" not in misses(cache4)
    assert not any(p.startswith("normalise") for p in misses(cache4))
    index = json.loads((corpus / "dataset" / "index.json").read_text())
    assert [v["version"] for v in index["versions"]] == [1, 2]

    # back to the first configuration: stages whose outputs were overwritten re-run, the
    # rest hit, and identical content re-uses dataset version 1 instead of making v3
    ctx5, cache5 = run(corpus, build(corpus), teacher)
    assert "dedup" not in misses(cache5)
    assert ctx5.state["dataset"] == str(ds)
    index = json.loads((corpus / "dataset" / "index.json").read_text())
    assert [v["version"] for v in index["versions"]] == [1, 2]


def test_dataset_rows_carry_provenance_and_dedup_mapping(corpus: Path) -> None:
    ctx, _ = run(corpus, build(corpus))
    dedup = json.loads((corpus / "data" / "dedup" / "dedup.json").read_text())
    assert dedup["stats"] == {"before": 3, "after": 2, "exact_dropped": 1, "near_dropped": 0}
    assert dedup["dropped"][0] == {
        "id": "lib/math_copy.py",
        "duplicate_of": "lib/math.py",
        "kind": "exact",
        "similarity": 1.0,
    }
    ds = Path(ctx.state["dataset"])
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["kind"] == "kitchen.data.dataset" and manifest["version"] == 1
    rows = [r for s in ("train", "valid", "test") for r in load_split(ds, s)]
    assert len(rows) == manifest["stats"]["rows"] == 2 + 2 + 2  # impl x2, doc x2, teacher x2
    by = {r["provenance"]["transformation"] for r in rows}
    assert by == {"template:impl", "template:doc", "teacher:explain"}
    teacher_rows = [r for r in rows if r["provenance"]["transformation"] == "teacher:explain"]
    gen = teacher_rows[0]["provenance"]["generator"]
    assert gen["kind"] == "teacher" and gen["model"] == "canned-teacher" and gen["prompt_sha256"]
    assert teacher_rows[0]["response"].endswith("is a function of this module.")
    for r in rows:
        assert r["messages"][-1] == {"role": "assistant", "content": r["response"]}
        assert r["provenance"]["source_file"] in {"math.py", "guide.md"}
    for split, info in manifest["files"].items():
        assert info["rows"] == len(load_split(ds, split))
    assert manifest["sources"][0]["url"].startswith("file://")


def test_gate_rejects_with_reasons_and_reports(tmp_path: Path) -> None:
    samples = [
        {"id": "a", "instruction": "x", "response": "def f(:\n", "lang": "python"},
        {"id": "b", "instruction": "x", "response": "def f():\n    return 1\n", "lang": "python"},
        {"id": "c", "instruction": "", "response": "text", "lang": "text"},
    ]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    from kitchen.data.stages.manifest import file_sha256

    write_manifest(
        tmp_path / "generate.json",
        "generate",
        {"samples": {"file": "samples.jsonl", "sha256": file_sha256(tmp_path / "samples.jsonl")}},
    )
    py = CommandCheck("py_compile", (sys.executable, "-m", "py_compile", "{file}"))
    ctx = Context(state={"samples": str(tmp_path / "generate.json")})
    Gate(out_dir=str(tmp_path / "g"), checks=(NonEmpty(), py))(ctx)
    rejected = {r["id"]: r["reasons"] for r in read_jsonl(tmp_path / "g" / "rejected.jsonl")}
    assert set(rejected) == {"a", "c"}
    assert rejected["a"][0]["check"] == "py_compile" and "SyntaxError" in rejected["a"][0]["reason"]
    assert rejected["c"] == [
        {"check": "non_empty", "reason": "field 'instruction' is empty or missing"}
    ]
    report = json.loads((tmp_path / "g" / "report.json").read_text())
    assert report["passed"] == 1 and report["pass_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert report["checks"]["py_compile"] == {"checked": 2, "failed": 1, "pass_rate": 0.5}

    missing = CommandCheck("lint", ("no-such-linter-xyz", "{file}"))
    with pytest.raises(UsageError, match="'no-such-linter-xyz' is not installed"):
        Gate(out_dir=str(tmp_path / "g2"), checks=(missing,))(ctx)
    with pytest.raises(UsageError, match=r"must contain a '\{file\}'"):
        CommandCheck("bad", ("ruff", "check"))


def test_package_schema_errors_name_file_row_and_field(tmp_path: Path) -> None:
    rows = [
        {
            "id": "1",
            "instruction": "q",
            "response": "a",
            "provenance": {
                "source_file": "f",
                "transformation": "t",
                "generator": {"kind": "template"},
            },
        },
        {
            "id": "2",
            "instruction": "q",
            "response": "  ",
            "provenance": {
                "source_file": "f",
                "transformation": "t",
                "generator": {"kind": "template"},
            },
        },
    ]
    (tmp_path / "accepted.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from kitchen.data.stages.manifest import file_sha256

    write_manifest(
        tmp_path / "gate.json",
        "gate",
        {
            "accepted": {
                "file": "accepted.jsonl",
                "sha256": file_sha256(tmp_path / "accepted.jsonl"),
            }
        },
    )
    ctx = Context(state={"gated": str(tmp_path / "gate.json")})
    pkg = Package(out_dir=str(tmp_path / "ds"))
    with pytest.raises(
        DataError, match=r"accepted.jsonl row 1 field 'response': must be a non-empty"
    ):
        pkg(ctx)
    out = dataclasses.replace(pkg, on_invalid="reject")(ctx)
    assert read_jsonl(Path(out["dataset"]) / "rejected.jsonl")[0]["errors"] == [
        "response: must be a non-empty string"
    ]
    # an edited output is caught by the manifest checksum
    (tmp_path / "accepted.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(DataError, match=r"changed since gate.json was written"):
        pkg(ctx)


def test_wrong_or_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    write_manifest(tmp_path / "x.json", "fetch", {"sources": []})
    ctx = Context(state={"normalised": str(tmp_path / "x.json")})
    with pytest.raises(DataError, match=r"field 'kind': expected 'kitchen.data.normalise'"):
        Dedup(out_dir=str(tmp_path / "d"))(ctx)
    with pytest.raises(UsageError, match=r"ctx.state\['normalised'\] is not set"):
        Dedup(out_dir=str(tmp_path / "d"))(Context())
    with pytest.raises(UsageError, match="unknown field"):
        Template("t", "python_functions", "{nmae}", "{source}")

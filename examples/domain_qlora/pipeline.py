"""Domain corpus → dataset → QLoRA adapter, as one kitchen workflow.

    fetch (git @ pinned commit, http, file://) → normalise (2 shards, parallel)
      → dedup (exact + MinHash LSH) → generate (templates + teacher, with provenance)
      → gate (2 shards, parallel; py_compile on code samples) → package (dataset/vN)
      → QLoRA SFT on dataset/vN/train.jsonl (hf adapters, ``model.py``)
      → prompt suite (test.jsonl) scored on base vs adapter → export adapter + merged model

Every data stage is cached by content hash (``work/cache``): run it twice and the second
run only revalidates the sources, and the model half reuses its completed run (keyed by
the dataset manifest and the SFT config). ``python -m examples.domain_qlora --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from examples.domain_qlora.teacher import ExtractiveTeacher

from kitchen.adapters.blob import FsspecBlobStore
from kitchen.adapters.noop import NoopTokenizer
from kitchen.context import Context
from kitchen.data.stages import (
    CommandCheck,
    Dedup,
    Fetch,
    FnCheck,
    Gate,
    Generate,
    Length,
    NonEmpty,
    Normalise,
    Package,
    TeacherTask,
    Template,
    sharded,
)
from kitchen.dsl import stage, workflow
from kitchen.dsl.nodes import Workflow
from kitchen.ports.bundle import Ports
from kitchen.runner import Runner, StageCache

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
#: A source that is down on purpose: it lands in fetch/rejected.jsonl, the run goes on.
UNREACHABLE = "http://127.0.0.1:9/tinyroute-changelog.md"

TEMPLATES = (
    Template(
        name="implement_function",
        extractor="python_functions",
        instruction="In the tinyroute module `{path}`, implement `{signature}`.\n{docstring}",
        response="{source}",
        response_lang="python",
    ),
    Template(
        name="describe_function",
        extractor="python_functions",
        instruction="What does `{qualname}` in tinyroute's `{path}` do?",
        response="{docstring}",
    ),
    Template(
        name="explain_docs_section",
        extractor="markdown_sections",
        instruction="Explain '{heading}' in tinyroute.",
        response="{body}",
    ),
    Template(
        name="docs_example",
        extractor="markdown_code",
        instruction="Show tinyroute code for '{heading}'.",
        response="{code}",
        response_lang="python",
    ),
)

TEACHER = (
    TeacherTask(
        name="explain_function",
        extractor="python_functions",
        instruction="Explain how `{qualname}` in tinyroute's `{path}` works.",
        prompt=(
            "You document the tinyroute Python library. Answer in one or two sentences.\n"
            "### Code from {path}\n{source}\n### Question\n{instruction}\n### Answer\n"
        ),
        max_tokens=160,
        max_items=8,
    ),
)


def _printable(sample: dict[str, Any]) -> list[str]:
    text = str(sample.get("response", ""))
    bad = sum(1 for c in text if not (c.isprintable() or c in "\n\t"))
    return [f"{bad} unprintable characters"] if text and bad / len(text) > 0.05 else []


CHECKS = (
    NonEmpty(),
    Length(field="response", min_chars=8, max_chars=4000),
    FnCheck("printable", _printable),
    CommandCheck("py_compile", (sys.executable, "-m", "py_compile", "{file}")),
)


def data_workflow(work: Path, shards: int = 2) -> Workflow:
    """The data half of the pipeline; every stage but fetch is content-hash cached."""
    d = work / "data"
    return workflow(
        "corpus_data",
        stage(Fetch(out_dir=str(d / "fetch"), attempts=3, backoff=0.05, rate_limit=50)),
        *sharded(Normalise(out_dir=str(d / "normalised")), shards),
        stage(Dedup(out_dir=str(d / "dedup"), threshold=0.7)),
        stage(
            Generate(
                out_dir=str(d / "generate"),
                templates=TEMPLATES,
                teacher=TEACHER,
                teacher_model=ExtractiveTeacher.model_name,
            )
        ),
        *sharded(Gate(out_dir=str(d / "gate"), checks=CHECKS), shards),
        stage(Package(out_dir=str(work / "dataset"), sources_input="fetched", seed=0)),
        description="Domain corpus → versioned instruction dataset (cookbook example 1).",
    )


# -- sources -------------------------------------------------------------------------------
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "tinyroute",
    "GIT_AUTHOR_EMAIL": "tinyroute@example.invalid",
    "GIT_COMMITTER_NAME": "tinyroute",
    "GIT_COMMITTER_EMAIL": "tinyroute@example.invalid",
    # fixed dates make the commit id a pure function of the shipped files
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, **_GIT_ENV)
    r = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return r.stdout.strip()


def make_code_repo(work: Path) -> tuple[Path, str]:
    """A local git repository of ``corpus/code`` (the framework's source), and its commit."""
    repo = work / "repos" / "tinyroute"
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "-q")
        _git(repo, "config", "core.autocrlf", "false")
        for src in sorted((CORPUS / "code").rglob("*")):
            if src.is_file() and "__pycache__" not in src.parts:
                dest = repo / src.relative_to(CORPUS / "code")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(src.read_bytes())
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "tinyroute 0.2")
    return repo, _git(repo, "rev-parse", "HEAD")


@contextlib.contextmanager
def serve_docs(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over http on 127.0.0.1 (a stand-in for a docs website)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
    )
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def write_sources(work: Path, docs_url: str) -> Path:
    repo, commit = make_code_repo(work)
    sources = {
        "version": 1,
        "sources": [
            {
                "name": "tinyroute-code",
                "kind": "git",
                "url": str(repo),
                "commit": commit,
                "include": ["**/*.py"],
            },
            {"name": "guide", "kind": "url", "url": f"{docs_url}/guide.md"},
            {"name": "middleware-docs", "kind": "url", "url": f"{docs_url}/middleware.md"},
            {"name": "faq", "kind": "url", "url": (CORPUS / "docs" / "local").as_uri()},
            {"name": "changelog", "kind": "url", "url": UNREACHABLE},
        ],
    }
    path = work / "sources.yaml"
    text = yaml.safe_dump(sources, sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def ports(work: Path) -> Ports:
    tok = NoopTokenizer()  # bytes as tokens: all the model-free teacher needs
    return Ports(
        blob=FsspecBlobStore(str(work / "blobs")),
        tokenizer=tok,
        extra={"teacher": ExtractiveTeacher(tok)},
    )


def run_data(work: Path, docs_url: str, *, shards: int = 2) -> dict[str, Any]:
    """Run the data workflow once; returns the final state, cache decisions and seconds."""
    work.mkdir(parents=True, exist_ok=True)
    sources = write_sources(work, docs_url)
    cache = StageCache(work / "cache")
    ctx = Context(ports=ports(work), state={"sources": str(sources)})
    t0 = time.perf_counter()
    Runner(cache=cache).run(data_workflow(work, shards), ctx)
    seconds = time.perf_counter() - t0
    return {
        "state": dict(ctx.state),
        "seconds": seconds,
        "cache": [{"path": d.path, "hit": d.hit, "key": d.key[:16]} for d in cache.decisions],
    }


def summary(work: Path, result: dict[str, Any]) -> str:
    ds = Path(result["state"]["dataset"])
    manifest = json.loads((ds / "manifest.json").read_text())
    dedup = json.loads((work / "data" / "dedup" / "dedup.json").read_text())
    report = json.loads((work / "data" / "gate" / "report.json").read_text())
    lines = [
        f"dataset: {ds} (version {manifest['version']})",
        f"  splits: {manifest['stats']['by_split']}",
        f"  by transformation: {manifest['stats']['by_transformation']}",
        f"dedup: {dedup['stats']}",
        f"gate: {report['passed']}/{report['total']} passed; errors: {report['errors']}",
        f"data pipeline: {result['seconds']:.2f}s; cache: "
        + ", ".join(f"{c['path']}={'hit' if c['hit'] else 'miss'}" for c in result["cache"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.domain_qlora", description=__doc__)
    p.add_argument("--work-dir", default="runs/domain_qlora", help="where everything is written")
    p.add_argument("--shards", type=int, default=2, help="parallel shards for normalise/gate")
    p.add_argument("--data-only", action="store_true", help="stop after packaging the dataset")
    p.add_argument("--max-steps", type=int, default=None, help="QLoRA SFT steps (default 40)")
    p.add_argument(
        "--model-path",
        default=None,
        help="a local pretrained transformers model to fine-tune instead of the tiny "
        "from-config Llama (its own tokenizer is used)",
    )
    args = p.parse_args(argv)
    work = Path(args.work_dir).resolve()
    from kitchen.errors import KitchenError

    try:
        with serve_docs(CORPUS / "docs" / "http") as url:
            result = run_data(work, url, shards=args.shards)
        print(summary(work, result), flush=True)
        if args.data_only:
            return 0
        from examples.domain_qlora import model as qlora

        spec = {"path": args.model_path, "mode": "qlora"} if args.model_path else None
        overrides = {"max_steps": args.max_steps} if args.max_steps else None
        report = qlora.run_model(
            work, Path(result["state"]["dataset"]), model=spec, overrides=overrides
        )
    except KitchenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(qlora.summary(report))
    print(f"report: {work / 'eval' / 'report.json'}")
    return 0

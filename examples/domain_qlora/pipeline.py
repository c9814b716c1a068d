"""Domain corpus → dataset → QLoRA adapter, as one kitchen workflow.

    fetch (git @ pinned commit, http, file://) → normalise (2 shards, parallel)
      → dedup (exact + MinHash LSH) → generate (templates + teacher, with provenance)
      → gate (2 shards, parallel; py_compile on code samples) → package (dataset/vN)
      → QLoRA SFT on dataset/vN/train.jsonl (hf adapters, ``model.py``)
      → prompt suite (test.jsonl) scored on base vs adapter → export adapter + merged model

Everything is configured by one file, ``pipeline.yaml`` (``config.py`` validates it). The
stages run as a chain (``run`` / ``run all``) or one at a time (``run dedup``): each stage
records its outputs in ``WORK/state.json``, and a stage run alone starts from the
recorded outputs of the stages before it, or says which one must run first.

Every data stage is cached by content hash (``work/cache``): run it twice and the second
run only revalidates the sources, and the model half reuses its completed run (keyed by
the dataset manifest and the SFT config). ``python -m examples.domain_qlora --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from examples.domain_qlora.config import (
    GitSource,
    LocalSource,
    PipelineConfig,
    ServedSource,
    load_config,
)
from examples.domain_qlora.teacher import ExtractiveTeacher

from kitchen.adapters.blob import FsspecBlobStore
from kitchen.adapters.noop import NoopTokenizer
from kitchen.context import Context
from kitchen.data.stages import (
    CommandCheck,
    Dedup,
    Fetch,
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
from kitchen.errors import UsageError
from kitchen.io import atomic_write_json, read_json
from kitchen.ports.bundle import Ports
from kitchen.runner import Runner, StageCache

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

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


@dataclasses.dataclass(frozen=True)
class Printable:
    """A response may hold at most ``max_fraction`` unprintable characters."""

    max_fraction: float = 0.05
    name: str = "printable"

    def __call__(self, sample: dict[str, Any]) -> list[str]:
        text = str(sample.get("response", ""))
        bad = sum(1 for c in text if not (c.isprintable() or c in "\n\t"))
        return (
            [f"{bad} unprintable characters"]
            if text and bad / len(text) > self.max_fraction
            else []
        )


PY_COMPILE = CommandCheck("py_compile", (sys.executable, "-m", "py_compile", "{file}"))


def checks(cfg: PipelineConfig) -> tuple[Any, ...]:
    """The quality gate's checks; the eval stage runs the same ones on generations."""
    f = cfg.filters
    out: list[Any] = [
        NonEmpty(),
        Length(field="response", min_chars=f.min_chars, max_chars=f.max_chars),
        Printable(f.max_unprintable),
    ]
    if f.py_compile:
        out.append(PY_COMPILE)
    return tuple(out)


def teacher_tasks(cfg: PipelineConfig) -> tuple[TeacherTask, ...]:
    g = cfg.generate
    return tuple(
        dataclasses.replace(t, max_items=g.teacher_max_items, max_tokens=g.teacher_max_tokens)
        for t in TEACHER
    )


#: The stages, in order: ``data`` ones are kitchen data stages (content-hash cached), the
#: ``model`` ones live in ``model.py``.
DATA_STAGES = ("fetch", "normalise", "dedup", "generate", "gate", "package")
MODEL_STAGES = ("train", "eval", "export")
STAGES = DATA_STAGES + MODEL_STAGES
#: What each stage reads from ``state.json``, and the stage that writes it.
NEEDS: dict[str, dict[str, str]] = {
    "fetch": {},
    "normalise": {"fetched": "fetch"},
    "dedup": {"normalised": "normalise"},
    "generate": {"deduped": "dedup"},
    "gate": {"samples": "generate"},
    "package": {"gated": "gate", "fetched": "fetch"},
    "train": {"dataset": "package"},
    "eval": {"run_dir": "train"},
    "export": {"run_dir": "train", "metrics": "eval"},
}


def stage_nodes(cfg: PipelineConfig, work: Path, name: str, shards: int | None = None) -> list[Any]:
    """The workflow nodes of data stage ``name`` (a parallel block + merge when sharded)."""
    d = work / "data"
    n = cfg.filters.shards if shards is None else shards
    f = cfg.fetch
    if name == "fetch":
        return [
            stage(
                Fetch(
                    out_dir=str(d / "fetch"),
                    attempts=f.attempts,
                    backoff=f.backoff,
                    rate_limit=f.rate_limit,
                )
            )
        ]
    if name == "normalise":
        return list(sharded(Normalise(out_dir=str(d / "normalised")), n))
    if name == "dedup":
        return [stage(Dedup(out_dir=str(d / "dedup"), threshold=cfg.filters.dedup_threshold))]
    if name == "generate":
        gen = Generate(
            out_dir=str(d / "generate"),
            templates=TEMPLATES,
            teacher=teacher_tasks(cfg),
            teacher_model=ExtractiveTeacher.model_name,
        )
        return [stage(gen)]
    if name == "gate":
        return list(sharded(Gate(out_dir=str(d / "gate"), checks=checks(cfg)), n))
    if name == "package":
        ds = cfg.dataset
        pkg = Package(
            out_dir=str(work / "dataset"),
            sources_input="fetched",
            seed=cfg.seed,
            fractions=(ds.train, ds.valid, ds.test),
        )
        return [stage(pkg)]
    raise UsageError(f"unknown data stage {name!r}; the data stages are {', '.join(DATA_STAGES)}")


def data_workflow(work: Path, shards: int = 2, cfg: PipelineConfig | None = None) -> Workflow:
    """The data half of the pipeline as one workflow (``run all`` runs it stage by stage,
    with the same node paths, so the two share cache entries)."""
    cfg = cfg or load_config()
    nodes = [n for name in DATA_STAGES for n in stage_nodes(cfg, work, name, shards)]
    return workflow(
        "corpus_data",
        *nodes,
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


def make_code_repo(work: Path, name: str, directory: Path) -> tuple[Path, str]:
    """A local git repository of ``directory`` (e.g. the framework's source), and its commit."""
    repo = work / "repos" / name
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "-q")
        _git(repo, "config", "core.autocrlf", "false")
        for src in sorted(directory.rglob("*")):
            if src.is_file() and "__pycache__" not in src.parts:
                dest = repo / src.relative_to(directory)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(src.read_bytes())
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"{name} snapshot")
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


def write_sources(work: Path, docs_url: str, cfg: PipelineConfig | None = None) -> Path:
    """``WORK/sources.yaml``, the fetch stage's input, from ``pipeline.yaml``'s sources."""
    cfg = cfg or load_config()
    entries: list[dict[str, Any]] = []
    for src in cfg.sources:
        if isinstance(src, GitSource):
            repo, commit = make_code_repo(work, src.name, cfg.resolve(src.path))
            entries.append(
                {
                    "name": src.name,
                    "kind": "git",
                    "url": str(repo),
                    "commit": commit,
                    "include": src.include,
                }
            )
        elif isinstance(src, ServedSource):
            entries.append({"name": src.name, "kind": "url", "url": f"{docs_url}/{src.file}"})
        elif isinstance(src, LocalSource):
            entries.append({"name": src.name, "kind": "url", "url": cfg.resolve(src.path).as_uri()})
        else:
            entries.append({"name": src.name, "kind": "url", "url": src.url})
    path = work / "sources.yaml"
    text = yaml.safe_dump({"version": 1, "sources": entries}, sort_keys=False)
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


# -- per-stage runs -------------------------------------------------------------------------


def read_state(work: Path) -> dict[str, Any]:
    """What the stages run so far recorded: ``{"values": {...}, "stages": {name: info}}``."""
    path = work / "state.json"
    return read_json(path) if path.is_file() else {"values": {}, "stages": {}}


def record_stage(work: Path, name: str, values: dict[str, Any], info: dict[str, Any]) -> None:
    state = read_state(work)
    state["values"].update(values)
    state["stages"][name] = {**info, "outputs": sorted(values)}
    atomic_write_json(work / "state.json", state)


def inputs_for(work: Path, name: str) -> dict[str, Any]:
    """The recorded inputs of stage ``name``, or a UsageError naming the stage to run first."""
    values = read_state(work)["values"]
    out: dict[str, Any] = {}
    for key, producer in NEEDS[name].items():
        value = values.get(key)
        if value is None or not Path(str(value)).exists():
            raise UsageError(
                f"stage {name!r} needs {key!r} from stage {producer!r}, which has not run in "
                f"{work}: run `python -m examples.domain_qlora --work-dir {work} run "
                f"{producer}` first (or `run all`)"
            )
        out[key] = value
    return out


def run_data_stage(
    cfg: PipelineConfig,
    work: Path,
    name: str,
    *,
    docs_url: str | None = None,
    cache: StageCache | None = None,
    shards: int | None = None,
) -> dict[str, Any]:
    """Run one data stage from the recorded outputs of the stages before it."""
    work.mkdir(parents=True, exist_ok=True)
    state = inputs_for(work, name)
    cache = cache or StageCache(work / "cache")
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if name == "fetch":
            url = docs_url or stack.enter_context(serve_docs(cfg.resolve(cfg.served_docs)))
            state["sources"] = str(write_sources(work, url, cfg))
        ctx = Context(ports=ports(work), state=dict(state))
        # the same workflow name as data_workflow: node paths, hence cache keys, match
        Runner(cache=cache).run(workflow("corpus_data", *stage_nodes(cfg, work, name, shards)), ctx)
    outputs = {k: v for k, v in ctx.state.items() if k not in state or k == "sources"}
    record_stage(work, name, outputs, {"seconds": round(time.perf_counter() - t0, 3)})
    return dict(ctx.state)


def run_data(
    work: Path, docs_url: str, *, shards: int = 2, cfg: PipelineConfig | None = None
) -> dict[str, Any]:
    """Run the data stages in order; returns the final state, cache decisions and seconds."""
    cfg = cfg or load_config()
    cache = StageCache(work / "cache")
    t0 = time.perf_counter()
    state: dict[str, Any] = {}
    for name in DATA_STAGES:
        state.update(run_data_stage(cfg, work, name, docs_url=docs_url, cache=cache, shards=shards))
    seconds = time.perf_counter() - t0
    return {
        "state": state,
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


def stage_summary(work: Path, name: str) -> str:
    info = read_state(work)["stages"][name]
    values = read_state(work)["values"]
    outs = ", ".join(f"{k}={values[k]}" for k in info["outputs"])
    return f"stage {name}: done in {info['seconds']:.2f}s; {outs}"


def run_model_stage(cfg: PipelineConfig, work: Path, name: str) -> str:
    """Run ``train``, ``eval`` or ``export`` (``model.py``); returns its summary line(s)."""
    from examples.domain_qlora import model as qlora

    inputs = inputs_for(work, name)
    t0 = time.perf_counter()
    if name == "train":
        result = qlora.train(cfg, work, Path(inputs["dataset"]))
        record_stage(
            work,
            "train",
            {"run_dir": result["run_dir"]},
            {"seconds": round(time.perf_counter() - t0, 3), "how": result["how"]},
        )
        return qlora.train_summary(result)
    if name == "eval":
        metrics = qlora.evaluate(cfg, work, Path(inputs["run_dir"]))
        record_stage(
            work,
            "eval",
            {"metrics": str(work / "eval" / "metrics.json")},
            {"seconds": round(time.perf_counter() - t0, 3)},
        )
        return qlora.eval_summary(metrics)
    report = qlora.export(cfg, work, Path(inputs["run_dir"]))
    record_stage(
        work,
        "export",
        {"report": str(work / "eval" / "report.json")},
        {"seconds": round(time.perf_counter() - t0, 3)},
    )
    return qlora.export_summary(report)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m examples.domain_qlora",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default=None, help="the pipeline config (default: pipeline.yaml)")
    p.add_argument("--work-dir", default=None, help="where everything is written")
    p.add_argument("--shards", type=int, default=None, help="override filters.shards")
    p.add_argument("--data-only", action="store_true", help="stop after packaging the dataset")
    p.add_argument("--max-steps", type=int, default=None, help="override model.sft.max_steps")
    p.add_argument(
        "--model-path",
        default=None,
        help="a local pretrained transformers model to fine-tune instead of the tiny "
        "from-config Llama (its own tokenizer is used)",
    )
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="run one stage, or all of them in order (the default)")
    r.add_argument("stage", nargs="?", default="all", choices=("all", *STAGES))
    args = p.parse_args(argv)
    from kitchen.errors import KitchenError

    try:
        cfg = load_config(args.config)
        updates: dict[str, Any] = {}
        if args.shards is not None:
            updates["filters"] = cfg.filters.model_copy(update={"shards": args.shards})
        if args.max_steps is not None or args.model_path is not None:
            model = cfg.model
            if args.max_steps is not None:
                sft = model.sft.model_copy(update={"max_steps": args.max_steps})
                model = model.model_copy(update={"sft": sft})
            if args.model_path is not None:
                model = model.model_copy(update={"path": args.model_path, "config": None})
            updates["model"] = model
        cfg = cfg.model_copy(update=updates)
        work = Path(args.work_dir or cfg.work_dir).resolve()
        stage_name = getattr(args, "stage", "all") if args.command else "all"
        if stage_name != "all":
            if stage_name in DATA_STAGES:
                run_data_stage(cfg, work, stage_name)
                print(stage_summary(work, stage_name), flush=True)
            else:
                print(run_model_stage(cfg, work, stage_name), flush=True)
            return 0
        with serve_docs(cfg.resolve(cfg.served_docs)) as url:
            result = run_data(work, url, shards=cfg.filters.shards, cfg=cfg)
        print(summary(work, result), flush=True)
        if args.data_only:
            return 0
        for name in MODEL_STAGES:
            print(run_model_stage(cfg, work, name), flush=True)
    except KitchenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"report: {work / 'eval' / 'report.json'}")
    return 0

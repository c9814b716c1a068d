"""Running a recipe end to end: config, run directory, ports, telemetry, resume."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kitchen import __version__
from kitchen.bootstrap import ADAPTERS, build_ports, check_config, metrics_stores, parse_sinks
from kitchen.context import Context
from kitchen.dsl.render import fingerprint
from kitchen.errors import UsageError
from kitchen.io import rewrite_jsonl
from kitchen.metrics import MetricsRecorder
from kitchen.ports.bundle import Ports
from kitchen.recipes.recipe import Recipe
from kitchen.run_mirror import RunMirror, clear_working_copy, is_remote, working_copy_for
from kitchen.rundir import RunDir, new_run_id
from kitchen.runner.cache import StageCache
from kitchen.runner.runner import ResumePoint, Runner
from kitchen.telemetry.events import JsonlEventSink, Telemetry


@dataclass
class RunResult:
    run_dir: RunDir
    context: Context
    resumed_from: str | None


def _mirror(url: str, local: Path) -> RunMirror:
    """The BlobStore mirror of a remote run dir; an unknown URL scheme is a usage error."""
    try:
        return RunMirror(url, local)
    except (ValueError, ImportError) as exc:
        scheme = url.split("://", 1)[0]
        raise UsageError(
            f"run dir {url}: no store for URL scheme {scheme!r} ({exc}); use a local path, "
            "file://, s3://, gs://, memory:// or another fsspec scheme whose package is installed"
        ) from None


def _create_run(location: str | Path) -> RunDir:
    """A new run directory, locked for this process (see :mod:`kitchen.runlock`)."""
    if is_remote(location):
        url = str(location)
        local = working_copy_for(url)
        rd = RunDir(local, _mirror(url, local))
        local.mkdir(parents=True, exist_ok=True)
        rd.lock()  # before clearing: another process on this machine may be writing it
        try:
            clear_working_copy(local)
            return RunDir.create(local, rd.mirror, lock=False).adopt_lock(rd)
        except BaseException:
            rd.unlock()
            raise
    return RunDir.create(location)


def _open_run(location: str | Path) -> RunDir:
    """An existing run directory, locked for this process."""
    if is_remote(location):
        url = str(location)
        local = working_copy_for(url)
        rd = RunDir(local, _mirror(url, local))
        local.mkdir(parents=True, exist_ok=True)
        rd.lock()
        try:
            rd.mirror.pull()  # always from the store: the store is the source of truth
            return RunDir.open(local, rd.mirror).adopt_lock(rd)
        except BaseException:
            rd.unlock()
            raise
    return RunDir.open(location, lock=True)


#: Files of a saved training state that are never legitimately empty.
_STATE_SUFFIXES = frozenset({".json", ".safetensors", ".pt", ".bin"})


def _checkpoint_problem(run: RunDir, record: dict[str, Any]) -> str | None:
    """Why ``record`` cannot be resumed from (a zero-byte, torn or missing state file),
    or None when it looks whole."""
    import json

    try:
        position = [(str(n), None if i is None else int(i)) for n, i in record["position"]]
        state_path = run.root / str(record["state_file"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"its index record is malformed ({type(exc).__name__}: {exc})"
    del position
    try:
        saved = json.loads(state_path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return f"{state_path} is missing"
    except (OSError, ValueError) as exc:
        return f"{state_path} is damaged ({type(exc).__name__})"
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
        return f"{state_path} does not hold a run state"
    training = (record.get("ports") or {}).get("training")
    if training:
        path = Path(run.resolve(str(training)))
        if str(training).startswith("run:") or ("://" not in str(training) and path.is_absolute()):
            if not path.exists():
                return f"its training state {path} is missing"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            files = [f for f in files if f.name != "run_state.json"]  # kitchen's, not the port's
            weights = [f for f in files if f.suffix in _STATE_SUFFIXES]
            if not files or any(f.stat().st_size == 0 for f in weights):
                return f"its training state {path} is empty or truncated"
            for f in weights:
                if f.suffix == ".json":
                    try:
                        json.loads(f.read_bytes().decode("utf-8"))
                    except (OSError, ValueError):
                        return f"its training state file {f} is damaged"
    return None


def _resume_point(run: RunDir) -> ResumePoint | None:
    """The newest checkpoint that is whole; damaged newer ones are skipped, and said so."""
    records = run.checkpoints()
    skipped: list[str] = []
    for record in reversed(records):
        problem = _checkpoint_problem(run, record)
        if problem is not None:
            skipped.append(f"{record.get('name', '?')}: {problem}")
            continue
        if skipped:
            _warn_fallback(run, skipped, str(record["name"]))
        position = [(str(n), None if i is None else int(i)) for n, i in record["position"]]
        return ResumePoint(position=position, record=record)
    if skipped:
        _warn_fallback(run, skipped, None)
    return None


def _warn_fallback(run: RunDir, skipped: list[str], used: str | None) -> None:
    import sys

    target = f"checkpoint {used}" if used else "the start (no whole checkpoint left)"
    print(
        f"warning: {run.location}: skipping damaged checkpoint(s) {'; '.join(skipped)}; "
        f"resuming from {target}",
        file=sys.stderr,
    )


def run_recipe(
    recipe: Recipe,
    *,
    adapters: str = "noop",
    config: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    progress: Any = None,
    stage_events: bool = True,
    cache_dir: str | Path | None = None,
    metrics: str | None = None,
    ports: Ports | None = None,
) -> RunResult:
    """Run ``recipe`` on ``adapters`` and return its run directory and final Context.

    With ``resume`` the run continues in that directory from its latest checkpoint (or
    from the start if it has none), with the config it was started with. ``ports``
    replaces the adapters' ports (tests, fault injection, embedding kitchen in another
    application); ``adapters`` is still recorded in the manifest.
    """
    sinks = parse_sinks(metrics)
    if adapters not in ADAPTERS:
        raise UsageError(f"unknown adapters {adapters!r}; choose one of: {', '.join(ADAPTERS)}")
    if resume is not None:
        if overrides or config:
            raise UsageError(
                "--set/config cannot be combined with --resume: a resumed run keeps the "
                "config it started with (see its config.json)"
            )
        run = _open_run(resume)
    else:
        base = dict(recipe.adapter_defaults.get(adapters, {}))
        base.update(config or {})
        cfg = recipe.config(base, overrides)
        if ports is None:
            check_config(adapters, cfg)  # a bad model spec writes no run directory
        run = _create_run(run_dir or Path("runs") / new_run_id(recipe.name))
    try:  # the run directory is locked from here until the run ends, however it ends
        if resume is not None:
            cfg, adapters, sinks, point = _prepare_resume(run, recipe, adapters, sinks)
        else:
            run.write_config(cfg.model_dump(mode="json"))
            point = None
        return _execute(
            recipe,
            run,
            cfg,
            adapters,
            sinks,
            point,
            ports,
            progress,
            stage_events,
            cache_dir,
            resumed=resume is not None,
        )
    finally:
        run.unlock()


def _prepare_resume(
    run: RunDir, recipe: Recipe, adapters: str, sinks: list[str]
) -> tuple[Any, str, list[str], ResumePoint | None]:
    manifest = run.read_manifest()
    if manifest.get("status") == "completed":
        raise UsageError(f"{run.root} already completed; there is nothing to resume")
    started_with = manifest.get("recipe")
    if started_with not in (None, recipe.name):
        raise UsageError(
            f"{run.root} was started with recipe {started_with!r}, not {recipe.name!r}"
        )
    adapters = manifest.get("adapters", adapters)
    sinks = list(manifest.get("metrics_sinks", sinks))
    cfg = recipe.config(run.read_config())
    point = _resume_point(run)
    if point is None:
        run.truncate_metrics(0)
    return cfg, adapters, sinks, point


def _execute(
    recipe: Recipe,
    run: RunDir,
    cfg: Any,
    adapters: str,
    sinks: list[str],
    point: ResumePoint | None,
    ports: Ports | None,
    progress: Any,
    stage_events: bool,
    cache_dir: str | Path | None,
    *,
    resumed: bool,
) -> RunResult:
    wf = recipe.workflow(cfg)
    owns_ports = ports is None  # ports built here are closed here; injected ones are not
    if ports is None:
        ports = build_ports(adapters, cfg, run)
    run_id = run.root.name
    telemetry = Telemetry(run_id, [JsonlEventSink(run.events_path)], stage_events=stage_events)
    recorder = MetricsRecorder(metrics_stores(ports, run, sinks))
    recorder.count = len(run.metrics())
    ctx = Context(cfg, ports, metrics=recorder, run=run, telemetry=telemetry)
    run.update_manifest(
        run_id=run_id,
        recipe=recipe.name,
        adapters=adapters,
        workflow=wf.name,
        workflow_fingerprint=fingerprint(wf),
        kitchen_version=__version__,
        metrics_sinks=sinks,
        status="running",
        started_at=run.read_manifest().get("started_at", time.time()),
        resumed_at=time.time() if resumed else None,
    )
    run.sync()
    cache = StageCache(cache_dir or os.environ.get("KITCHEN_CACHE_DIR") or ".kitchen-cache")
    runner = Runner(telemetry=telemetry, progress=progress, cache=cache)
    try:
        runner.run(wf, ctx, resume=point)
    except BaseException as exc:
        run.update_manifest(status="failed", error=str(exc), ended_at=time.time())
        run.sync()
        raise
    finally:
        if owns_ports:
            for err in ports.close():
                telemetry.event("port_close_failed", level="warning", error=repr(err))
        recorder.close()
        telemetry.close()
        if cache.decisions:
            rewrite_jsonl(run.root / "cache.jsonl", [asdict(d) for d in cache.decisions])
    run.update_manifest(
        status="completed", ended_at=time.time(), final_state=_jsonable_state(ctx.state)
    )
    run.sync()
    return RunResult(run, ctx, point.record["name"] if point else None)


def _jsonable_state(state: Mapping[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for k, v in state.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            v = repr(v)
        out[k] = v
    return out

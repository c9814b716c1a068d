"""Train one LoRA adapter per codebase in the background.

:class:`AdapterService` takes projects (a name and a source tree), queues them, and trains
each on a pool of worker threads with kitchen's supervised workflow (``run_recipe``), so the
caller gets control back at once. What it guarantees:

- **Status registry**: :class:`StatusRegistry`, one JSON file written atomically
  (``kitchen.io.atomic_write_json``) on every change - ``queued`` → ``training`` (with
  ``progress``: step, total, fraction) → ``done`` (with the adapter path) or ``failed``
  (with ``reason``). Any process can read it: ``python -m examples.codebase_adapters status``.
- **Events**: ``adapter_queued``, ``adapter_started``, ``adapter_progress``,
  ``adapter_retry``, ``adapter_done``, ``adapter_failed`` through a kitchen
  :class:`~kitchen.telemetry.Telemetry` (its sinks: ``events.jsonl`` in the work directory,
  plus any you pass); completion callbacks get ``(project, record)``.
- **Memory guard**: before a job starts, available memory (psutil, else /proc/meminfo) must
  cover ``memory_mb`` per job plus ``reserve_mb``; otherwise the job is *refused* - marked
  failed with a message saying how much was available and what to change.
- **Retries**: a transient error from a port (``ConnectionError``, ``TimeoutError``,
  :class:`TransientError`, or any exception with ``transient = True``) is retried up to
  ``attempts`` times with exponential backoff and jitter; the retry *resumes* the run from
  its last checkpoint. Other errors fail the job at once with the reason.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.codebase_adapters.chunking import chunk_tree

from kitchen import Context, Recipe, run_recipe
from kitchen.dsl import stage
from kitchen.errors import StageError
from kitchen.io import atomic_write_json, read_json, rewrite_jsonl
from kitchen.recipes.defaults import TINY_HF_MODEL
from kitchen.telemetry import JsonlEventSink, Telemetry
from kitchen.workflows.supervised import SupervisedConfig, supervised_workflow

STATES = ("queued", "training", "done", "failed")


class TransientError(RuntimeError):
    """A failure worth retrying (a flaky network, a busy backend)."""

    transient = True


def is_transient(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionError | TimeoutError) or getattr(cur, "transient", False):
            return True
        cur = cur.cause if isinstance(cur, StageError) else (cur.__cause__ or cur.__context__)
    return False


# -- the status registry ------------------------------------------------------------------


class StatusRegistry:
    """Project states in one JSON file, rewritten atomically on every change."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"version": 1, "projects": {}}
        if self.path.is_file():
            self._data = read_json(self.path)

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """The registry as another process sees it (the last complete write)."""
        return read_json(path)["projects"]

    def update(self, project: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            rec = self._data["projects"].setdefault(project, {"project": project})
            rec.update(fields)
            rec["updated_at"] = time.time()
            if rec.get("state") not in STATES:
                raise ValueError(f"bad state {rec.get('state')!r}")
            atomic_write_json(self.path, self._data)
            return dict(rec)

    def get(self, project: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self._data["projects"].get(project)
            return dict(rec) if rec else None

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._data["projects"].items()}


# -- memory guard --------------------------------------------------------------------------


def available_mb() -> float:
    try:
        import psutil

        return psutil.virtual_memory().available / 2**20
    except ImportError:  # Linux without psutil
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


class MemoryRefused(RuntimeError):
    pass


# -- the per-project recipe ------------------------------------------------------------------


@dataclass
class PublishChunks:
    """Put the project's chunk rows into the DatasetStore port (replayed on resume)."""

    path: Path
    name: str = "publish_chunks"

    def __call__(self, ctx: Context) -> dict[str, Any]:
        from kitchen.io import read_jsonl

        store = ctx.ports.require("dataset")
        return {"train_source": store.save(read_jsonl(self.path), str(self.path))}


@dataclass
class FaultInjector:
    """Chaos testing: raise ``TransientError`` from the training port's ``forward_backward``
    on call ``at_call`` during the first ``failing_attempts`` attempts of a job."""

    at_call: int = 3
    failing_attempts: int = 1


class _FlakyTraining:
    def __init__(self, inner: Any, at_call: int) -> None:
        self._inner, self._at, self._calls = inner, at_call, 0

    def forward_backward(self, *args: Any, **kwargs: Any) -> Any:
        self._calls += 1
        if self._calls == self._at:
            raise TransientError(f"injected transient failure on forward_backward #{self._at}")
        return self._inner.forward_backward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class InjectFaults:
    injector: FaultInjector | None
    attempt: int
    name: str = "inject_faults"

    def __call__(self, ctx: Context) -> None:
        inj = self.injector
        if inj is not None and self.attempt <= inj.failing_attempts:
            ctx.ports.training = _FlakyTraining(ctx.ports.training, inj.at_call)


def project_recipe(chunks: Path, injector: FaultInjector | None, attempt: int) -> Recipe:
    return Recipe(
        name="codebase_adapter",
        description="LoRA SFT on one codebase's chunks",
        config_model=SupervisedConfig,
        build=lambda cfg: supervised_workflow(
            cfg,
            name="codebase_adapter",
            setup=[
                stage(PublishChunks(chunks), replay=True, outputs=["train_source"]),
                stage(InjectFaults(injector, attempt), replay=True),
            ],
        ),
    )


# -- progress ------------------------------------------------------------------------------


class _Progress:
    """Runner progress sink → registry progress + ``adapter_progress`` events (throttled)."""

    def __init__(self, service: AdapterService, project: str, epochs: int) -> None:
        self.s, self.project, self.epochs = service, project, epochs
        self.epoch = 0
        self.batch_total = 1
        self.batch_done = 0
        self._last = 0.0

    def start(self, description: str, total: int, completed: int = 0) -> str:
        if description == "epoch":
            self.epoch = completed
        else:
            self.batch_total, self.batch_done = max(1, total), completed
        return description

    def advance(self, task: str, status: str | None = None) -> None:
        if task == "epoch":
            self.epoch += 1
            self.batch_done = 0
        else:
            self.batch_done += 1
        now = time.monotonic()
        if now - self._last >= self.s.progress_interval or task == "epoch":
            self._last = now
            total = self.epochs * self.batch_total
            step = min(total, self.epoch * self.batch_total + self.batch_done)
            progress = {"step": step, "total": total, "fraction": round(step / total, 4)}
            if status:
                progress["status"] = status
            self.s.registry.update(self.project, state="training", progress=progress)
            self.s.telemetry.event(
                "adapter_progress", level="info", project=self.project, **progress
            )

    def stop(self, task: str) -> None:
        pass


# -- the service ---------------------------------------------------------------------------


@dataclass
class AdapterService:
    work_dir: Path
    adapters: str = "hf"
    workers: int = 1
    epochs: int = 2
    batch_size: int = 8
    learning_rate: float = 5e-3
    max_length: int = 256
    max_chars: int = 1200
    parser: str = "auto"
    memory_mb: float = 600.0
    reserve_mb: float = 256.0
    attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    progress_interval: float = 0.5
    event_sinks: Sequence[Any] = ()
    on_complete: Callable[[str, dict[str, Any]], None] | None = None
    faults: dict[str, FaultInjector] = field(default_factory=dict)
    memory_probe: Callable[[], float] = available_mb
    #: the hf model spec (default: the tiny from-config base + LoRA rank 8)
    model: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.registry = StatusRegistry(self.work_dir / "status.json")
        self.telemetry = Telemetry(
            "codebase_adapters",
            [JsonlEventSink(self.work_dir / "events.jsonl"), *self.event_sinks],
        )
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="adapter")
        self._futures: dict[str, Future[dict[str, Any]]] = {}
        self._start_lock = threading.Lock()  # memory check + start are atomic

    # -- public API ---------------------------------------------------------------------
    def submit(self, project: str, source: str | Path) -> Future[dict[str, Any]]:
        """Queue ``project``; returns at once. The future resolves to the final record."""
        if project in self._futures and not self._futures[project].done():
            raise ValueError(f"{project} is already queued or training")
        self.registry.update(
            project, state="queued", source=str(source), reason=None, progress=None, attempts=0
        )
        self.telemetry.event("adapter_queued", level="info", project=project)
        fut = self._pool.submit(self._job, project, Path(source))
        self._futures[project] = fut
        return fut

    def status(self, project: str | None = None) -> Any:
        return self.registry.get(project) if project else self.registry.all()

    def wait(self, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        for fut in list(self._futures.values()):
            fut.result(timeout)
        return self.registry.all()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.telemetry.close()

    # -- one job ------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "max_length": self.max_length,
            "eval_fraction": 0.2,
            "checkpoint_every": 2,
        }
        if self.adapters == "hf":
            # a from-config base model + a LoRA adapter, unless another spec is given
            cfg["model"] = self.model or TINY_HF_MODEL
        return cfg

    def _guard(self, project: str) -> None:
        avail = self.memory_probe()
        need = self.memory_mb + self.reserve_mb
        if avail < need:
            raise MemoryRefused(
                f"memory guard: {avail:.0f} MB available, {need:.0f} MB needed "
                f"({self.memory_mb:.0f} MB per job + {self.reserve_mb:.0f} MB reserve); "
                "not started - free memory, lower workers, or resubmit later"
            )

    def _job(self, project: str, source: Path) -> dict[str, Any]:
        try:
            with self._start_lock:
                self._guard(project)
                self.registry.update(project, state="training", progress={"fraction": 0.0})
            self.telemetry.event("adapter_started", level="info", project=project)
            chunks = chunk_tree(source, project, parser=self.parser, max_chars=self.max_chars)
            if not chunks:
                raise ValueError(f"no Python chunks under {source}")
            data = self.work_dir / project / "chunks.jsonl"
            rewrite_jsonl(data, [c.row() for c in chunks])
            self.registry.update(project, state="training", chunks=len(chunks))
            result = self._train_with_retries(project, data)
        except BaseException as exc:
            reason = str(exc) if isinstance(exc, MemoryRefused) else _reason(exc)
            rec = self.registry.update(project, state="failed", reason=reason)
            self.telemetry.event("adapter_failed", level="warning", project=project, reason=reason)
            self._notify(project, rec)
            return rec
        rec = self.registry.update(project, state="done", reason=None, **result)
        self.telemetry.event("adapter_done", level="info", project=project, **result)
        self._notify(project, rec)
        return rec

    def _train_with_retries(self, project: str, data: Path) -> dict[str, Any]:
        run_dir = self.work_dir / project / "run"
        attempt = 0
        while True:
            attempt += 1
            self.registry.update(project, state="training", attempts=attempt)
            recipe = project_recipe(data, self.faults.get(project), attempt)
            progress = _Progress(self, project, self.epochs)
            try:
                if attempt > 1 and (run_dir / "config.json").is_file():
                    res = run_recipe(
                        recipe, adapters=self.adapters, resume=run_dir, progress=progress
                    )
                else:
                    res = run_recipe(
                        recipe,
                        adapters=self.adapters,
                        config=self._config(),
                        run_dir=run_dir,
                        progress=progress,
                    )
                break
            except Exception as exc:
                if not is_transient(exc) or attempt >= self.attempts:
                    raise
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                delay *= random.uniform(0.8, 1.2)
                self.telemetry.event(
                    "adapter_retry",
                    level="warning",
                    project=project,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                    error=_reason(exc),
                )
                self.registry.update(project, state="training", last_error=_reason(exc))
                time.sleep(delay)
        state = res.context.state
        adapter = self._export(run_dir) if self.adapters == "hf" else state.get("final_weights")
        return {
            "progress": {"fraction": 1.0},
            "run_dir": str(run_dir),
            "adapter": adapter,
            "val_loss": state.get("val_loss"),
            "steps": state.get("step"),
            "attempts": attempt,
        }

    def _export(self, run_dir: Path) -> str:
        from kitchen.adapters.hf.export import export_run

        written = export_run(run_dir, run_dir.parent / "export")
        return str(written["adapter"])  # adapter_model.safetensors + adapter_config.json

    def _notify(self, project: str, rec: dict[str, Any]) -> None:
        if self.on_complete is not None:
            try:
                self.on_complete(project, rec)
            except Exception as exc:  # a broken callback must not kill the worker
                self.telemetry.event("callback_failed", level="warning", error=str(exc))


def _reason(exc: BaseException) -> str:
    while isinstance(exc, StageError):
        exc = exc.cause
    return f"{type(exc).__name__}: {exc}"

"""The runner: executes a workflow IR over a Context.

Resume works by fast-forwarding: given the position a checkpoint recorded (for example
``[("epoch", 2), ("batch", 17), ("checkpoint", None)]``) the runner skips the nodes before
it, re-running only ``replay`` stages (which rebuild transient objects), enters loops at
the recorded index, and at the checkpoint stage itself calls ``restore(ctx, record)``
instead of the stage. Execution then continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import re
import time
from collections.abc import Iterable, Sequence, Sized
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from kitchen.context import Context, LoopFrame
from kitchen.dsl.nodes import Conditional, Loop, Node, Parallel, Stage, Workflow
from kitchen.errors import CheckpointError, StageError, WorkflowError
from kitchen.runner.cache import CacheDecision, StageCache
from kitchen.runner.executor import BranchExecutor, ThreadExecutor
from kitchen.telemetry.events import Telemetry

Segment = tuple[str, int | None]
#: Metrics shown next to progress bars, when a workflow logs them.
_STATUS_KEYS = ("loss", "val_loss", "reward", "kl")
_INDEX_RE = re.compile(r"\[\d+\]")


@dataclass
class ResumePoint:
    """Where to continue: a checkpoint's position and its record (passed to ``restore``)."""

    position: list[Segment]
    record: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Executes workflows. Reusable across runs; holds no per-run state itself."""

    def __init__(
        self,
        telemetry: Telemetry | None = None,
        executor: BranchExecutor | None = None,
        progress: Any = None,
        cache: StageCache | None = None,
    ) -> None:
        self.telemetry = telemetry or Telemetry(stage_events=False)
        self.executor = executor or ThreadExecutor()
        self.progress = progress
        self.cache = cache

    # ------------------------------------------------------------------ public
    def run(self, wf: Workflow, ctx: Context, resume: ResumePoint | None = None) -> Context:
        """Run ``wf`` to completion; on failure raise :class:`StageError` with the node path."""
        tel = self.telemetry
        ctx.telemetry = tel
        started = time.perf_counter()
        tel.event(
            "workflow_start",
            level="info",
            workflow=wf.name,
            resumed_from="/".join(_fmt(s) for s in resume.position) if resume else None,
        )
        target = list(resume.position) if resume else None
        try:
            with tel.span(f"workflow:{wf.name}", workflow=wf.name):
                leftover = self._seq(wf.body, ctx, "", target, resume)
            if leftover:
                raise CheckpointError(
                    "resume position "
                    + "/".join(_fmt(s) for s in resume.position)  # type: ignore[union-attr]
                    + f" does not exist in workflow {wf.name!r}; was the workflow changed?"
                )
        except BaseException as exc:
            tel.event(
                "workflow_failed",
                level="error",
                workflow=wf.name,
                error=str(exc),
                seconds=time.perf_counter() - started,
            )
            tel.flush()
            raise
        tel.event(
            "workflow_end",
            level="info",
            workflow=wf.name,
            seconds=round(time.perf_counter() - started, 6),
        )
        tel.flush()
        return ctx

    # ------------------------------------------------------------------ internals
    def _seq(
        self,
        nodes: Sequence[Node],
        ctx: Context,
        prefix: str,
        target: list[Segment] | None,
        resume: ResumePoint | None,
    ) -> list[Segment] | None:
        """Run a node sequence. Returns the unconsumed resume target (None once reached)."""
        pos = ctx.position
        for node in nodes:
            if target:
                name = target[0][0]
                if node.name != name:
                    # Fast-forward: skip, except stages that rebuild transient state.
                    if type(node) is Stage and node.replay:
                        self._stage(node, ctx, prefix + node.name)
                    continue
                target = self._enter_target(node, ctx, prefix, target, resume)
                continue
            t = type(node)
            if t is Stage:
                self._stage(node, ctx, prefix + node.name)  # type: ignore[arg-type]
            elif t is Loop:
                self._loop(node, ctx, prefix, pos, None, 0, resume)  # type: ignore[arg-type]
            elif t is Conditional:
                self._conditional(node, ctx, prefix, pos, None, resume)  # type: ignore[arg-type]
            else:
                self._parallel(node, ctx, prefix, pos)  # type: ignore[arg-type]
        return target

    def _enter_target(
        self,
        node: Node,
        ctx: Context,
        prefix: str,
        target: list[Segment],
        resume: ResumePoint | None,
    ) -> list[Segment] | None:
        pos = ctx.position
        _, index = target[0]
        rest = target[1:]
        if isinstance(node, Stage):
            if rest:
                raise CheckpointError(f"resume position runs through stage {node.name!r}")
            restore = getattr(node.fn, "restore", None)
            if not callable(restore):
                raise CheckpointError(
                    f"cannot resume at {prefix + node.name}: the stage has no restore() method"
                )
            ctx.path = prefix + node.name
            try:
                restore(ctx, resume.record if resume else {})
            except CheckpointError:
                raise
            except Exception as exc:
                raise StageError(prefix + node.name + " (restore)", exc) from exc
            self.telemetry.event("resumed", level="info", path=prefix + node.name)
            return None
        if isinstance(node, Loop):
            self._loop(node, ctx, prefix, pos, rest, int(index or 0), resume)
            return None
        if isinstance(node, Conditional):
            self._conditional(node, ctx, prefix, pos, (int(index or 0), rest), resume)
            return None
        raise CheckpointError(f"cannot resume inside parallel block {prefix + node.name!r}")

    def _stage(self, node: Stage, ctx: Context, path: str) -> None:
        ctx.path = path
        if node.cache is not None and self.cache is not None:
            self._cached_stage(node, ctx, path)
            return
        self._execute(node, ctx, path)

    def _cached_stage(self, node: Stage, ctx: Context, path: str) -> None:
        cache = self.cache
        assert cache is not None
        static = _INDEX_RE.sub("", path)
        key, components = cache.key(node, static, ctx.state)
        stored = cache.lookup(key)
        hit = stored is not None and all(k in stored for k in node.outputs)
        cache.record(CacheDecision(path, key, hit, components))
        self.telemetry.event("stage_cache", level="info", path=path, key=key, hit=hit)
        if hit:
            assert stored is not None
            ctx.state.update({k: stored[k] for k in node.outputs})
            return
        self._execute(node, ctx, path)
        missing = [k for k in node.outputs if k not in ctx.state]
        if missing:
            raise StageError(path, KeyError(f"stage did not set its declared outputs {missing}"))
        cache.store(key, components, {k: ctx.state[k] for k in node.outputs})

    def _execute(self, node: Stage, ctx: Context, path: str) -> None:
        tel = self.telemetry
        if not tel.stage_events and not tel.spans:
            # Hot path: no per-stage telemetry requested.
            try:
                out = node.fn(ctx, **node.params) if node.params else node.fn(ctx)
            except BaseException as exc:
                self._fail(node, ctx, path, exc)
            if out is not None:
                ctx.state.update(out)
            return
        t0 = time.perf_counter()
        if tel.stage_events:
            tel.event("stage_start", path=path)
        with tel.span(path, path=path, stage=node.name) as span:
            with ctx.metrics.capture() if span is not None else nullcontext() as logged:
                try:
                    out = node.fn(ctx, **node.params) if node.params else node.fn(ctx)
                except BaseException as exc:
                    if span is not None:
                        span.record_exception(exc)
                    self._fail(node, ctx, path, exc)
            if out is not None:
                ctx.state.update(out)
            if span is not None and logged:
                # Only metrics this stage logged (on its own thread) become span attributes.
                for k, v in logged.items():
                    span.set_attribute(f"kitchen.metric.{k}", v)
        if tel.stage_events:
            tel.event("stage_end", path=path, seconds=round(time.perf_counter() - t0, 9))

    def _fail(self, node: Stage, ctx: Context, path: str, exc: BaseException) -> None:
        if isinstance(exc, StageError | KeyboardInterrupt | SystemExit):
            raise exc
        if node.rollback is not None:
            try:
                node.rollback(ctx, exc)
                self.telemetry.event("stage_rolled_back", level="warning", path=path)
            except Exception as rb_exc:  # the original error matters more
                self.telemetry.event(
                    "rollback_failed", level="error", path=path, error=repr(rb_exc)
                )
        self.telemetry.event("stage_failed", level="error", path=path, error=repr(exc))
        raise StageError(path, exc) from exc

    def _loop(
        self,
        node: Loop,
        ctx: Context,
        prefix: str,
        pos: list[Segment],
        target: list[Segment] | None,
        start: int,
        resume: ResumePoint | None,
    ) -> None:
        items, length = self._items(node, ctx, prefix)
        if target is not None and length is not None and start >= length:
            raise CheckpointError(
                f"cannot resume at {prefix + node.name}[{start}]: the loop now runs {length} "
                "times; the checkpoint is past its end. Was the config (e.g. epochs) changed "
                "since? Restore it in the run's config.json"
            )
        if start:
            items = itertools.islice(items, start, None)
        frame = LoopFrame(node.name, start, None, length)
        ctx.frames.append(frame)
        pos.append((node.name, start))
        bar = None
        if self.progress is not None and node.progress and length is not None:
            bar = self.progress.start(prefix + node.name, length, completed=start)
        base = prefix + node.name
        try:
            i = start
            for item in items:
                frame.index = i
                frame.item = item
                pos[-1] = (node.name, i)
                target = self._seq(node.body, ctx, f"{base}[{i}]/", target, resume)
                if bar is not None:
                    last = ctx.metrics.last
                    status = "  ".join(f"{k}={last[k]:.4g}" for k in _STATUS_KEYS if k in last)
                    self.progress.advance(bar, status=status)
                i += 1
        finally:
            ctx.frames.pop()
            pos.pop()
            if bar is not None:
                self.progress.stop(bar)

    def _items(self, node: Loop, ctx: Context, prefix: str) -> tuple[Iterable[Any], int | None]:
        over: Any = node.over
        if callable(over):
            ctx.path = prefix + node.name
            try:
                over = over(ctx)
            except Exception as exc:
                raise StageError(prefix + node.name + " (loop source)", exc) from exc
        if isinstance(over, bool):
            raise StageError(prefix + node.name, TypeError("loop source returned a bool"))
        if isinstance(over, int):
            if over < 0:
                raise StageError(prefix + node.name, ValueError(f"negative loop count {over}"))
            return range(over), over
        if not isinstance(over, Iterable):
            raise StageError(
                prefix + node.name,
                TypeError(f"loop source must be an int or iterable, got {type(over).__name__}"),
            )
        length = len(over) if isinstance(over, Sized) else None
        return over, length

    def _conditional(
        self,
        node: Conditional,
        ctx: Context,
        prefix: str,
        pos: list[Segment],
        resume_branch: tuple[int, list[Segment]] | None,
        resume: ResumePoint | None,
    ) -> None:
        path = prefix + node.name
        if resume_branch is not None:
            which, target = resume_branch
        else:
            ctx.path = path
            try:
                which = 0 if node.predicate(ctx) else 1
            except Exception as exc:
                raise StageError(path + " (predicate)", exc) from exc
            target = None
        body = node.then if which == 0 else node.orelse
        if self.telemetry.stage_events:
            self.telemetry.event("branch", path=path, taken="then" if which == 0 else "else")
        if not body:
            return
        pos.append((node.name, which))
        try:
            self._seq(body, ctx, path + "/", target, resume)
        finally:
            pos.pop()

    def _parallel(self, node: Parallel, ctx: Context, prefix: str, pos: list[Segment]) -> None:
        path = prefix + node.name
        snapshot = dict(ctx.state)
        children = []
        for _ in node.branches:
            child = ctx.branch()
            child.position = [*pos, (f"parallel:{node.name}", None)]
            children.append(child)

        def make_task(b_index: int) -> Any:
            b = node.branches[b_index]
            child = children[b_index]

            def task() -> Context:
                self._seq(b.body, child, f"{path}/{b.name}/", None, None)
                return child

            # A copy of the caller's contextvars per branch, so that the OpenTelemetry span
            # current here (the workflow span) is the parent of the branch's stage spans on
            # the executor's threads too.
            return functools.partial(contextvars.copy_context().run, task)

        self.telemetry.event("parallel_start", path=path, branches=len(node.branches))
        results = self.executor.run_all([make_task(i) for i in range(len(node.branches))])
        merged: dict[str, str] = {}
        for b, child in zip(node.branches, results, strict=True):
            if b.outputs:
                keys = [k for k in b.outputs if k in child.state]
            else:
                keys = [
                    k
                    for k, v in child.state.items()
                    if k not in snapshot or (snapshot[k] is not v and snapshot[k] != v)
                ]
            for k in keys:
                if k in merged:
                    raise StageError(
                        path,
                        WorkflowError(
                            f"branches {merged[k]!r} and {b.name!r} both wrote state key {k!r}; "
                            "declare distinct outputs for each branch"
                        ),
                    )
                merged[k] = b.name
                ctx.state[k] = child.state[k]
        self.telemetry.event("parallel_end", path=path, merged=sorted(merged))


def _fmt(seg: Segment) -> str:
    name, index = seg
    return name if index is None else f"{name}[{index}]"


def run(wf: Workflow, ctx: Context | None = None, **kwargs: Any) -> Context:
    """Run a workflow with a default runner (convenience for scripts and tests)."""
    return Runner(**kwargs).run(wf, ctx if ctx is not None else Context())

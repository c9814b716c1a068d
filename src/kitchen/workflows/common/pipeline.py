"""Pipelined training steps: submit step N+1 before awaiting step N.

Stages push each step's futures with :func:`submit`; :func:`collect` awaits every step
but the newest ``keep`` and logs their metrics; :func:`drain` awaits all (before a
checkpoint, an evaluation or the end). The queue lives in ``ctx.vars`` (transient).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from kitchen.context import Context
from kitchen.ports.futures import Future

PENDING = "pending_steps"


@dataclass
class PendingStep:
    step: int
    futures: dict[str, Future[Any]]
    extra: dict[str, float] = field(default_factory=dict)


def queue(ctx: Context) -> deque[PendingStep]:
    q = ctx.vars.get(PENDING)
    if q is None:
        q = ctx.vars[PENDING] = deque()
    return q


def submit(ctx: Context, step: int, futures: dict[str, Future[Any]], **extra: float) -> None:
    queue(ctx).append(PendingStep(step, futures, dict(extra)))


def _finish(ctx: Context, item: PendingStep) -> None:
    metrics: dict[str, float] = dict(item.extra)
    fb = item.futures.get("forward_backward")
    if fb is not None:
        out = fb.result()
        metrics["loss"] = float(out.metrics.get("loss:sum", float("nan")))
        if "num_tokens" in out.metrics:
            metrics["num_tokens"] = float(out.metrics["num_tokens"])
    opt = item.futures.get("optim_step")
    if opt is not None:
        res = opt.result()
        for k, v in (res.metrics or {}).items():
            metrics[f"optim/{k}"] = float(v)
    for name, fut in item.futures.items():
        if name not in ("forward_backward", "optim_step"):
            fut.result()
    ctx.metrics.log(metrics, step=item.step)


def collect(ctx: Context, keep: int = 1) -> None:
    """Await and log all pending steps except the newest ``keep``."""
    q = queue(ctx)
    while len(q) > keep:
        _finish(ctx, q.popleft())


def drain(ctx: Context) -> None:
    """Await and log every pending step."""
    collect(ctx, keep=0)

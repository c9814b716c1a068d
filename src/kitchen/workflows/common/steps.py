"""Stages every training workflow shares: logging pipelined steps and step-count triggers."""

from __future__ import annotations

from collections.abc import Mapping

from kitchen.context import Context
from kitchen.workflows.common import pipeline


def _every(ctx: Context, field: str) -> int:
    cfg = ctx.config
    value = cfg.get(field, 0) if isinstance(cfg, Mapping) else getattr(cfg, field, 0)
    return int(value or 0)


def log_step(ctx: Context) -> None:
    """Await and log every step but the newest: step N is awaited after N+1 is submitted."""
    pipeline.collect(ctx, keep=1)


def drain(ctx: Context) -> None:
    """Await and log all submitted steps."""
    pipeline.drain(ctx)


def checkpoint_due(ctx: Context) -> bool:
    """True every ``config.checkpoint_every`` steps (never when it is 0)."""
    every = _every(ctx, "checkpoint_every")
    return bool(every) and int(ctx.state["step"]) % every == 0


def eval_due(ctx: Context) -> bool:
    """True every ``config.eval_every`` steps (never when it is 0)."""
    every = _every(ctx, "eval_every")
    return bool(every) and int(ctx.state["step"]) % every == 0

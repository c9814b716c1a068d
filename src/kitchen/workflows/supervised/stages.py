"""Stages of the supervised workflow. Each is a plain function of the Context."""

from __future__ import annotations

import math
import random
from typing import Any

from kitchen.context import Context
from kitchen.errors import DataError
from kitchen.ports.types import AdamParams, Datum
from kitchen.telemetry.logging import default_logger
from kitchen.workflows.common import pipeline
from kitchen.workflows.common.datums import next_token_datum, scale_weights, total_weight
from kitchen.workflows.common.rendering import render_row
from kitchen.workflows.common.steps import checkpoint_due, drain, eval_due, log_step  # noqa: F401  (re-exported stages)
from kitchen.workflows.supervised.config import SupervisedConfig


def _cfg(ctx: Context) -> SupervisedConfig:
    cfg = ctx.config
    if not isinstance(cfg, SupervisedConfig):
        cfg = SupervisedConfig.model_validate(cfg or {})
    return cfg


def _tokenize(ctx: Context, source: str, rows: Any, cfg: SupervisedConfig) -> list[Datum]:
    tok = ctx.ports.require("tokenizer")
    out: list[Datum] = []
    too_long = 0
    for i, row in enumerate(rows):
        tokens, weights = render_row(tok, row, train_on=cfg.train_on, source=source, index=i)
        if len(tokens) > cfg.max_length:
            if cfg.on_long_row == "error":
                raise DataError(
                    source,
                    i,
                    None,
                    f"has {len(tokens)} tokens, more than max_length={cfg.max_length}; raise "
                    "max_length, shorten the row, or set on_long_row=truncate",
                )
            too_long += 1
        d = next_token_datum(tokens, weights, cfg.max_length)
        if d is None:
            raise DataError(
                source,
                i,
                None,
                f"nothing to train on after truncation to max_length={cfg.max_length}; "
                "raise max_length or fix the row",
            )
        out.append(d)
    if too_long:
        # Said, not silent: the rows were cut at max_length (on_long_row=error refuses).
        default_logger("kitchen.sft").warning(
            "rows truncated to max_length",
            source=source,
            rows=too_long,
            max_length=cfg.max_length,
        )
        if ctx.telemetry is not None:
            ctx.telemetry.event(
                "rows_truncated",
                level="debug",
                source=source,
                rows=too_long,
                max_length=cfg.max_length,
            )
    return out


def load_dataset(ctx: Context) -> dict[str, Any]:
    """Load, tokenize and split the dataset into ``ctx.vars['train'|'eval']`` (replayed)."""
    cfg = _cfg(ctx)
    store = ctx.ports.require("dataset")
    # A setup stage may have produced the data (e.g. the quickstart's prepared corpus).
    source = ctx.state.get("train_source") or cfg.dataset
    eval_source = ctx.state.get("eval_source") or cfg.eval_dataset
    if not source:
        raise DataError("<config>", None, "dataset", "no dataset given; set dataset=PATH_OR_URL")
    data = _tokenize(ctx, source, store.load(source), cfg)
    if eval_source:
        train, evals = data, _tokenize(ctx, eval_source, store.load(eval_source), cfg)
    else:
        order = list(range(len(data)))
        random.Random(cfg.seed).shuffle(order)
        n_eval = int(len(data) * cfg.eval_fraction)
        evals = [data[i] for i in sorted(order[:n_eval])]
        train = [data[i] for i in sorted(order[n_eval:])]
    if not train:
        raise DataError(source, None, None, "no training rows left after the eval split")
    ctx.vars["train"], ctx.vars["eval"] = train, evals
    return {"num_train": len(train), "num_eval": len(evals)}


def init_session(ctx: Context) -> None:
    """Check the training port is ready and record what it trains (replayed)."""
    training = ctx.ports.require("training")
    if _cfg(ctx).packing:
        set_packing = getattr(training, "set_packing", None)
        if set_packing is not None:
            set_packing(True)
        # Backends without it (noop, remote) have no padding to remove: nothing to do.
    info = training.get_info()
    ctx.vars["model_info"] = info
    ctx.state.setdefault("step", 0)


def data_parallel(training: Any) -> tuple[int, int]:
    """``(rank, world_size)`` of a data-parallel training port; ``(0, 1)`` for others."""
    rank = int(getattr(training, "data_parallel_rank", 0) or 0)
    world = int(getattr(training, "data_parallel_size", 1) or 1)
    return rank, world


def steps_per_epoch(ctx: Context) -> int:
    cfg = _cfg(ctx)
    return math.ceil(len(ctx.vars["train"]) / cfg.batch_size)


def total_steps(ctx: Context) -> int:
    cfg = _cfg(ctx)
    n = steps_per_epoch(ctx) * cfg.epochs
    return min(n, cfg.max_steps) if cfg.max_steps else n


def epochs(ctx: Context) -> int:
    return _cfg(ctx).epochs


def shuffle_epoch(ctx: Context) -> None:
    """The epoch's batch order, a pure function of (seed, epoch) so resume sees it again."""
    cfg = _cfg(ctx)
    order = list(range(len(ctx.vars["train"])))
    random.Random(cfg.seed * 1_000_003 + ctx.index("epoch")).shuffle(order)
    ctx.vars["order"] = order


def batches(ctx: Context) -> list[list[int]]:
    """Batches left in this epoch (loop source), stopping at ``max_steps``."""
    cfg = _cfg(ctx)
    order = ctx.vars["order"]
    out = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    epoch = ctx.index("epoch")
    done_before = epoch * len(out)
    if cfg.max_steps is not None:
        out = out[: max(0, cfg.max_steps - done_before)]
    return out


def learning_rate(cfg: SupervisedConfig, step: int, total: int) -> float:
    """Linear warmup, then constant or linear decay to 0 at ``total``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "linear" and total > 0:
        return cfg.learning_rate * max(0.0, 1.0 - step / total)
    return cfg.learning_rate


def forward_backward(ctx: Context) -> None:
    """Submit the batch's forward/backward (does not wait).

    Under data parallelism every rank holds the same global batch and submits its slice
    ``batch[rank::world_size]``; the weights are scaled by the *global* batch weight, so
    the backend's SUM over ranks is the per-token mean of the global batch.
    """
    training = ctx.ports.require("training")
    batch = [ctx.vars["train"][i] for i in ctx.item("batch")]
    weight = total_weight(batch)
    rank, world = data_parallel(training)
    if world > 1:
        batch = batch[rank::world]
    datums = scale_weights(batch, 1.0 / weight)  # the summed loss becomes a per-token mean
    ctx.vars["fb_future"] = training.forward_backward(datums, "cross_entropy")
    ctx.vars["batch_tokens"] = weight


def optim_step(ctx: Context) -> None:
    """Submit the optimiser step (does not wait) and queue the step's futures."""
    cfg = _cfg(ctx)
    step = int(ctx.state["step"])
    lr = learning_rate(cfg, step, total_steps(ctx))
    params = AdamParams(
        learning_rate=lr,
        beta1=cfg.beta1,
        beta2=cfg.beta2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        grad_clip_norm=cfg.grad_clip_norm,
    )
    opt = ctx.ports.require("training").optim_step(params)
    pipeline.submit(
        ctx,
        step + 1,
        {"forward_backward": ctx.vars.pop("fb_future"), "optim_step": opt},
        lr=lr,
        epoch=float(ctx.index("epoch")),
    )
    ctx.state["step"] = step + 1


def eval_at_epoch_end(ctx: Context) -> bool:
    return _cfg(ctx).eval_every == 0


def evaluate(ctx: Context) -> dict[str, Any]:
    """Mean per-token loss on the eval set (forward only)."""
    evals: list[Datum] = ctx.vars.get("eval") or []
    if not evals:
        return {}
    cfg = _cfg(ctx)
    training = ctx.ports.require("training")
    total_loss = 0.0
    total_w = 0.0
    futures = []
    for i in range(0, len(evals), cfg.batch_size):
        chunk = evals[i : i + cfg.batch_size]
        futures.append((total_weight(chunk), training.forward(chunk, "cross_entropy")))
    for w, fut in futures:
        total_loss += float(fut.result().metrics["loss:sum"])
        total_w += w
    val = total_loss / total_w
    ctx.metrics.log({"val_loss": val}, step=int(ctx.state["step"]))
    return {"val_loss": val}


def save_final(ctx: Context) -> dict[str, Any]:
    """Save the final weights for sampling and export."""
    pipeline.drain(ctx)
    resp = ctx.ports.require("training").save_weights_for_sampler("final").result()
    return {"final_weights": resp.path}

"""Stages of the preference (DPO) workflow.

Each step: ``forward`` the batch's chosen and rejected sequences (after the previous
``optim_step``, in submission order), compute the DPO loss and its gradient with respect to
each sequence logprob in Python, then ``forward_backward(cross_entropy)`` with per-token
weights ``-dL/dlogp`` and ``optim_step`` (see :mod:`kitchen.losses.custom`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from kitchen.context import Context
from kitchen.errors import DataError, UsageError
from kitchen.losses.custom import custom_backward, custom_forward, logprobs_of
from kitchen.losses.dpo import dpo_batch
from kitchen.ports.types import Datum, ModelInput
from kitchen.rl.common import adam
from kitchen.workflows.common import pipeline
from kitchen.workflows.common.steps import checkpoint_due, drain, eval_due, log_step  # noqa: F401  (re-exported stages)
from kitchen.workflows.preference.config import DPOConfig
from kitchen.workflows.preference.data import Pair, synthetic_pairs, tokenize_pairs


def _cfg(ctx: Context) -> DPOConfig:
    cfg = ctx.config
    if not isinstance(cfg, DPOConfig):
        cfg = DPOConfig.model_validate(cfg or {})
    return cfg


def _rows(ctx: Context, source: str, seed: int) -> list[Any]:
    if source.startswith("synthetic:"):
        return synthetic_pairs(seed=seed)
    return list(ctx.ports.require("dataset").load(source))


def load_dataset(ctx: Context) -> dict[str, Any]:
    """Validate and tokenise the pairs into ``ctx.vars['train'|'eval']`` (replayed)."""
    cfg = _cfg(ctx)
    tok = ctx.ports.require("tokenizer")
    pairs = tokenize_pairs(
        tok, _rows(ctx, cfg.dataset, cfg.seed), source=cfg.dataset, max_length=cfg.max_length
    )
    if cfg.eval_dataset:
        train = pairs
        evals = tokenize_pairs(
            tok,
            _rows(ctx, cfg.eval_dataset, cfg.seed + 1),
            source=cfg.eval_dataset,
            max_length=cfg.max_length,
        )
    else:
        order = list(range(len(pairs)))
        random.Random(cfg.seed).shuffle(order)
        n_eval = int(len(pairs) * cfg.eval_fraction)
        evals = [pairs[i] for i in sorted(order[:n_eval])]
        train = [pairs[i] for i in sorted(order[n_eval:])]
    if not train:
        raise DataError(cfg.dataset, None, None, "no training pairs left after the eval split")
    ctx.vars["train"], ctx.vars["eval"] = train, evals
    ctx.state.setdefault("step", 0)
    ctx.vars["model_info"] = ctx.ports.require("training").get_info()
    return {"num_train": len(train), "num_eval": len(evals)}


def _datums(pairs: Sequence[Pair]) -> list[Datum]:
    return [p.chosen for p in pairs] + [p.rejected for p in pairs]


def _seq_logps(datums: Sequence[Datum], logps: Sequence[Sequence[float]]) -> list[float]:
    out = []
    for d, lp in zip(datums, logps, strict=True):
        w = d.loss_fn_inputs["weights"].data
        out.append(sum(x for x, m in zip(lp, w, strict=True) if m))
    return out


def _reference_logps(ctx: Context, pairs: Sequence[Pair], batch: int) -> list[list[float]]:
    cfg = _cfg(ctx)
    datums = _datums(pairs)
    if not datums:
        return []
    if cfg.reference == "precomputed":
        client = ctx.ports.require("training")
    elif cfg.reference == "frozen_copy":
        client = ctx.ports.require("reference")
    else:
        client = ctx.ports.require("training")
        fwd = getattr(client, "forward_with_adapter_disabled", None)
        if not callable(fwd):
            raise UsageError(
                "reference='adapter_disabled' needs a TrainingClient with "
                "forward_with_adapter_disabled(); this backend has none. Use "
                "reference='precomputed' (identical for a freshly initialised LoRA adapter)"
            )
    seq: list[float] = []
    if hasattr(client, "forward"):
        call = (
            client.forward_with_adapter_disabled
            if cfg.reference == "adapter_disabled"
            else lambda ds: custom_forward(client, ds)
        )
        futs = [
            (datums[i : i + batch], call(datums[i : i + batch]))
            for i in range(0, len(datums), batch)
        ]
        for ds, fut in futs:
            seq += _seq_logps(ds, logprobs_of(fut.result()))
    else:  # a SamplingClient: score the full sequences
        futs2 = []
        for d in datums:
            toks = [*d.model_input.to_ints(), int(d.loss_fn_inputs["target_tokens"].data[-1])]
            futs2.append((d, client.compute_logprobs(ModelInput.from_ints(toks))))
        for d, fut in futs2:
            lps = [0.0 if x is None else float(x) for x in fut.result()][1:]
            seq += _seq_logps([d], [lps])
    n = len(pairs)
    return [[seq[i], seq[n + i]] for i in range(n)]


def reference(ctx: Context) -> dict[str, Any]:
    """Reference sequence logprobs of every pair, computed once before training.

    The values go to ``ctx.state`` (JSON), so a resumed run reuses them.
    """
    cfg = _cfg(ctx)
    return {
        "ref_train": _reference_logps(ctx, ctx.vars["train"], 2 * cfg.batch_size),
        "ref_eval": _reference_logps(ctx, ctx.vars["eval"], 2 * cfg.batch_size),
    }


def epochs(ctx: Context) -> int:
    return _cfg(ctx).epochs


def _steps_per_epoch(ctx: Context) -> int:
    return math.ceil(len(ctx.vars["train"]) / _cfg(ctx).batch_size)


def _total_steps(ctx: Context) -> int:
    cfg = _cfg(ctx)
    n = _steps_per_epoch(ctx) * cfg.epochs
    return min(n, cfg.max_steps) if cfg.max_steps else n


def batches(ctx: Context) -> list[list[int]]:
    cfg = _cfg(ctx)
    order = list(range(len(ctx.vars["train"])))
    random.Random(cfg.seed * 1_000_003 + ctx.index("epoch")).shuffle(order)
    out = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    if cfg.max_steps is not None:
        out = out[: max(0, cfg.max_steps - ctx.index("epoch") * len(out))]
    return out


def _loss(
    cfg: DPOConfig, pairs: Sequence[Pair], logps: list[list[float]], refs: Sequence[Sequence[float]]
) -> tuple[float, list[list[float]], dict[str, float]]:
    datums = _datums(pairs)
    seq = _seq_logps(datums, logps)
    n = len(pairs)
    loss, terms, metrics = dpo_batch(
        seq[:n],
        seq[n:],
        [r[0] for r in refs],
        [r[1] for r in refs],
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        label_smoothing=cfg.label_smoothing,
        chosen_lens=[p.chosen_len for p in pairs],
        rejected_lens=[p.rejected_len for p in pairs],
    )
    grads = []
    for k, d in enumerate(datums):
        g = terms[k].grad_chosen if k < n else terms[k - n].grad_rejected
        grads.append([g if m else 0.0 for m in d.loss_fn_inputs["weights"].data])
    return loss, grads, metrics


def dpo_step(ctx: Context) -> None:
    """Forward → DPO loss and gradients → forward_backward → optim_step (not awaited)."""
    cfg = _cfg(ctx)
    training = ctx.ports.require("training")
    idx = ctx.item("batch")
    pairs = [ctx.vars["train"][i] for i in idx]
    refs = [ctx.state["ref_train"][i] for i in idx]
    datums = _datums(pairs)
    logps = logprobs_of(custom_forward(training, datums).result())
    loss, grads, m = _loss(cfg, pairs, logps, refs)
    fb = custom_backward(training, datums, grads)
    step = int(ctx.state["step"])
    params = adam(cfg, step, _total_steps(ctx))
    opt = training.optim_step(params)
    metrics = {f"dpo/{k}" if "/" not in k else k: v for k, v in m.items()}
    metrics.update(
        {
            "loss": loss,
            "dpo/margin": m["rewards/margins"],
            "dpo/accuracy": m["rewards/accuracies"],
            "lr": params.learning_rate,
            "epoch": float(ctx.index("epoch")),
        }
    )
    # "fb" (not "forward_backward") so the logged loss is the DPO loss, not the surrogate's.
    pipeline.submit(ctx, step + 1, {"fb": fb, "optim_step": opt}, **metrics)
    ctx.state["step"] = step + 1


def evaluate(ctx: Context) -> dict[str, Any]:
    """DPO loss, margins and accuracy on the held-out pairs (forward only)."""
    cfg = _cfg(ctx)
    pipeline.drain(ctx)
    pairs: list[Pair] = ctx.vars.get("eval") or []
    step = int(ctx.state["step"])
    if not pairs or ctx.state.get("last_eval_step") == step:
        return {}
    training = ctx.ports.require("training")
    datums = _datums(pairs)
    logps = logprobs_of(custom_forward(training, datums).result())
    loss, _, m = _loss(cfg, pairs, logps, ctx.state["ref_eval"])
    out = {
        "val_loss": loss,
        "val/dpo_margin": m["rewards/margins"],
        "val/dpo_accuracy": m["rewards/accuracies"],
    }
    ctx.metrics.log(out, step=step)
    return {**out, "last_eval_step": step}


def save_final(ctx: Context) -> dict[str, Any]:
    pipeline.drain(ctx)
    resp = ctx.ports.require("training").save_weights_for_sampler("final").result()
    return {"final_weights": resp.path}

"""Stages of the distillation workflow.

Off-policy: on dataset sequences, at every completion position the candidate token set is
the target token plus ``num_candidates`` tokens sampled from the teacher at that prefix (with
their teacher logprobs); the student's logprobs of every candidate come from ``forward`` over
``K`` copies of the sequence whose ``target_tokens`` are the k-th candidates. The divergence
(forward/reverse KL or JSD(β), with temperature) between the two distributions renormalised
over the set, and its gradient, go through ``cross_entropy`` weights (custom-loss plumbing).
With the candidate set equal to the vocabulary this is the exact token-level divergence;
a backend exposing per-position top-k logprobs would make it one call (see the docs).

On-policy: the student samples completions, the teacher scores them with
``compute_logprobs``, and the per-token reverse KL ``log q - log p`` enters the advantages,
``A_t = -kl_coef·(log q(x_t) - log p(x_t))``, trained with ``importance_sampling``.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from typing import Any

from kitchen.context import Context
from kitchen.errors import DataError
from kitchen.losses.custom import custom_backward, custom_forward, logprobs_of
from kitchen.losses.divergences import divergence
from kitchen.ports.types import AdamParams, Datum, ModelInput, SamplingParams, TensorData
from kitchen.rl.common import adam, mix_seed
from kitchen.workflows.common import pipeline
from kitchen.workflows.common.datums import next_token_datum, scale_weights, total_weight
from kitchen.workflows.common.steps import checkpoint_due, drain, eval_due, log_step  # noqa: F401  (re-exported stages)
from kitchen.workflows.distillation.config import DistillConfig


def _cfg(ctx: Context) -> DistillConfig:
    cfg = ctx.config
    if not isinstance(cfg, DistillConfig):
        cfg = DistillConfig.model_validate(cfg or {})
    return cfg


def synthetic_rows(n: int = 48, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 4), rng.randint(0, 4)
        rows.append({"prompt": f"{a}+{b}=", "completion": str(a + b)})
    return rows


def _encode(ctx: Context, row: Any, source: str, i: int) -> tuple[list[int], list[int]]:
    tok = ctx.ports.require("tokenizer")
    for key in ("prompt", "completion"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise DataError(source, i, key, "must be a non-empty string")
    p = tok.encode(row["prompt"])
    if tok.bos_token_id is not None:
        p = [tok.bos_token_id, *p]
    c = tok.encode(row["completion"])
    if tok.eos_token_id is not None:
        c = [*c, tok.eos_token_id]
    return p, c


def load_dataset(ctx: Context) -> dict[str, Any]:
    """Tokenise prompt/completion rows into ``ctx.vars['train'|'eval']`` (replayed)."""
    cfg = _cfg(ctx)
    if cfg.dataset.startswith("synthetic:"):
        rows: list[Any] = synthetic_rows(seed=cfg.seed)
    else:
        rows = list(ctx.ports.require("dataset").load(cfg.dataset))
    seqs = []
    for i, row in enumerate(rows):
        p, c = _encode(ctx, row, cfg.dataset, i)
        seqs.append({"prompt": p, "completion": c})
    order = list(range(len(seqs)))
    random.Random(cfg.seed).shuffle(order)
    n_eval = int(len(seqs) * cfg.eval_fraction)
    ctx.vars["eval"] = [seqs[i] for i in sorted(order[:n_eval])]
    ctx.vars["train"] = [seqs[i] for i in sorted(order[n_eval:])]
    if not ctx.vars["train"]:
        raise DataError(cfg.dataset, None, None, "no training rows left after the eval split")
    ctx.vars["cands"] = {}
    ctx.state.setdefault("step", 0)
    return {"num_train": len(ctx.vars["train"]), "num_eval": len(ctx.vars["eval"])}


def _sft_datum(seq: dict[str, list[int]], max_length: int) -> Datum | None:
    p, c = seq["prompt"], seq["completion"]
    return next_token_datum(p + c, [0.0] * len(p) + [1.0] * len(c), max_length)


def prepare_teacher(ctx: Context) -> None:
    """The teacher SamplingClient: ``ports.extra['teacher']``, or (``self_sft``) a snapshot of
    the student fine-tuned on the dataset, after which the student is reset to its initial
    state with ``save_state``/``load_state``. Replayed: on resume it is rebuilt, bit for bit,
    before the checkpoint restores the student."""
    cfg = _cfg(ctx)
    wired = ctx.ports.extra.get("teacher")
    if cfg.teacher == "port" or (cfg.teacher == "auto" and wired is not None):
        ctx.vars["teacher"] = ctx.ports.require("teacher")
        return
    training = ctx.ports.require("training")
    init = training.save_state("distill-student-init").result().path
    data = [d for d in (_sft_datum(s, cfg.max_length) for s in ctx.vars["train"]) if d]
    rng = random.Random(mix_seed(cfg.seed, 17))
    for _ in range(cfg.teacher_sft_steps):
        batch = rng.sample(data, min(cfg.batch_size, len(data)))
        batch = scale_weights(batch, 1.0 / total_weight(batch))
        training.forward_backward(batch, "cross_entropy")
        training.optim_step(
            AdamParams(learning_rate=cfg.teacher_learning_rate, grad_clip_norm=cfg.grad_clip_norm)
        )
    ctx.vars["teacher"] = training.save_weights_and_get_sampling_client("distill-teacher")
    training.load_state(init).result()


def num_steps(ctx: Context) -> int:
    return _cfg(ctx).num_steps


def _batch(ctx: Context, step: int) -> list[int]:
    cfg = _cfg(ctx)
    n = len(ctx.vars["train"])
    out = []
    for j in range(cfg.batch_size):
        k = step * cfg.batch_size + j
        order = list(range(n))
        random.Random(mix_seed(cfg.seed, k // n)).shuffle(order)
        out.append(order[k % n])
    return out


# -- off-policy ------------------------------------------------------------------------------


def _candidates(
    ctx: Context, key: str, seq: dict[str, list[int]]
) -> list[tuple[int, list[int], list[float]]]:
    """Per completion position ``i`` (index into the target tokens): candidate tokens (the
    target first) and their teacher logprobs. Cached: the teacher is fixed."""
    cache = ctx.vars["cands"]
    if key in cache:
        return cache[key]
    cfg = _cfg(ctx)
    teacher = ctx.vars["teacher"]
    tokens = (seq["prompt"] + seq["completion"])[: cfg.max_length]
    n_prompt = len(seq["prompt"])
    full = teacher.compute_logprobs(ModelInput.from_ints(tokens))
    futs = []
    for pos in range(max(1, n_prompt), len(tokens)):
        params = SamplingParams(
            max_tokens=1, temperature=1.0, seed=mix_seed(cfg.seed, zlib.crc32(key.encode()), pos)
        )
        futs.append(
            (pos, teacher.sample(ModelInput.from_ints(tokens[:pos]), cfg.num_candidates, params))
        )
    full_lp = full.result()
    out = []
    for pos, fut in futs:
        cands = [tokens[pos]]
        lps = [float(full_lp[pos])]
        for s in fut.result().sequences:
            if s.tokens and s.tokens[0] not in cands and s.logprobs:
                cands.append(int(s.tokens[0]))
                lps.append(float(s.logprobs[0]))
        out.append((pos - 1, cands, lps))
    cache[key] = out
    return out


def _offpolicy(
    ctx: Context, keys: Sequence[str], seqs: Sequence[dict[str, list[int]]], backward: bool
) -> tuple[dict[str, float], Any]:
    cfg = _cfg(ctx)
    training = ctx.ports.require("training")
    datums: list[Datum] = []
    layout = []  # (first datum index, K, positions)
    for key, seq in zip(keys, seqs, strict=True):
        tokens = (seq["prompt"] + seq["completion"])[: cfg.max_length]
        pos = _candidates(ctx, key, seq)
        k_max = max(len(c) for _, c, _ in pos)
        base_targets = list(tokens[1:])
        first = len(datums)
        for k in range(k_max):
            tgt = list(base_targets)
            for i, cands, _ in pos:
                tgt[i] = cands[k] if k < len(cands) else cands[0]
            datums.append(
                Datum(
                    ModelInput.from_ints(tokens[:-1]),
                    {
                        "target_tokens": TensorData(tuple(tgt), "int64"),
                        "weights": TensorData((0.0,) * len(tgt), "float32"),
                    },
                )
            )
        layout.append((first, k_max, pos))
    logps = logprobs_of(custom_forward(training, datums).result())
    grads = [[0.0] * d.model_input.length for d in datums]
    n_pos = sum(len(p) for _, _, p in layout)
    total = 0.0
    target_gap = 0.0
    for first, _k_max, pos in layout:
        for i, cands, t_lps in pos:
            s_lps = [logps[first + k][i] for k in range(len(cands))]
            value, g = divergence(
                s_lps, t_lps, cfg.divergence, beta=cfg.jsd_beta, temperature=cfg.temperature
            )
            total += value
            target_gap += t_lps[0] - s_lps[0]
            for k, gk in enumerate(g):
                grads[first + k][i] = gk / n_pos
    metrics = {"kl": total / n_pos, "kl/target_logratio": target_gap / n_pos}
    fut = custom_backward(training, datums, grads) if backward else None
    return metrics, fut


# -- on-policy -------------------------------------------------------------------------------


def _onpolicy(
    ctx: Context, seqs: Sequence[dict[str, list[int]]], seed: int, backward: bool
) -> tuple[dict[str, float], Any]:
    cfg = _cfg(ctx)
    training = ctx.ports.require("training")
    teacher = ctx.vars["teacher"]
    tok = ctx.ports.require("tokenizer")
    sampler = training.save_weights_and_get_sampling_client(f"distill-{seed}")
    stop = [tok.eos_token_id] if tok.eos_token_id is not None else None
    size = cfg.group_size if backward else 1
    futs = []
    for j, seq in enumerate(seqs):
        params = SamplingParams(
            max_tokens=cfg.max_tokens,
            stop=stop,
            temperature=cfg.sample_temperature,
            seed=mix_seed(seed, j),
        )
        futs.append((seq, sampler.sample(ModelInput.from_ints(seq["prompt"]), size, params)))
    samples = []
    for seq, fut in futs:
        for s in fut.result().sequences:
            if s.tokens:
                full = seq["prompt"] + list(s.tokens)
                samples.append((seq["prompt"], list(s.tokens), list(s.logprobs or []), full))
    scored = [(x, teacher.compute_logprobs(ModelInput.from_ints(x[3]))) for x in samples]
    n_tok = sum(len(x[1]) for x in samples)
    datums = []
    total = 0.0
    for (prompt, _action, lps, full), fut in scored:
        t_lp = fut.result()[len(prompt) :]
        rkl = [q - float(p) for q, p in zip(lps, t_lp, strict=True)]
        total += sum(rkl)
        n_p = len(prompt)
        adv = [0.0] * (n_p - 1) + [-cfg.kl_coef * r / n_tok for r in rkl]
        datums.append(
            Datum(
                ModelInput.from_ints(full[:-1]),
                {
                    "target_tokens": TensorData(tuple(full[1:]), "int64"),
                    "logprobs": TensorData(tuple([0.0] * (n_p - 1) + lps), "float32"),
                    "advantages": TensorData(tuple(adv), "float32"),
                },
            )
        )
    metrics = {"kl": total / n_tok if n_tok else 0.0, "sampled_tokens": float(n_tok)}
    fut2 = None
    if backward and datums:
        fut2 = training.forward_backward(datums, "importance_sampling")
    return metrics, fut2


def distill_step(ctx: Context) -> None:
    cfg = _cfg(ctx)
    training = ctx.ports.require("training")
    step = int(ctx.state["step"])
    idx = _batch(ctx, step)
    seqs = [ctx.vars["train"][i] for i in idx]
    if cfg.mode == "off_policy":
        metrics, fb = _offpolicy(ctx, [f"t{i}" for i in idx], seqs, True)
    else:
        pipeline.drain(ctx)  # the student sampler must see every update
        metrics, fb = _onpolicy(ctx, seqs, mix_seed(cfg.seed, step), True)
    params = adam(cfg, step, cfg.num_steps)
    futures: dict[str, Any] = {"optim_step": training.optim_step(params)}
    if fb is not None:
        futures["fb"] = fb
    metrics["loss"] = metrics["kl"]
    metrics["lr"] = params.learning_rate
    pipeline.submit(ctx, step + 1, futures, **metrics)
    ctx.state["step"] = step + 1


def evaluate(ctx: Context) -> dict[str, Any]:
    """Student-teacher KL on the held-out rows (no gradient)."""
    cfg = _cfg(ctx)
    pipeline.drain(ctx)
    seqs = ctx.vars.get("eval") or []
    step = int(ctx.state["step"])
    if not seqs or ctx.state.get("last_eval_step") == step:
        return {}
    fixed = ctx.vars["train"][:16]  # a fixed slice of the training rows, for a smooth curve
    if cfg.mode == "off_policy":
        m, _ = _offpolicy(ctx, [f"e{i}" for i in range(len(seqs))], seqs, False)
        mt, _ = _offpolicy(ctx, [f"t{i}" for i in range(len(fixed))], fixed, False)
    else:
        m, _ = _onpolicy(ctx, seqs, mix_seed(cfg.seed, -1), False)
        mt, _ = _onpolicy(ctx, fixed, mix_seed(cfg.seed, -2), False)
    out = {"val_kl": m["kl"], "kl/train_fixed": mt["kl"]}
    ctx.metrics.log(out, step=step)
    return {**out, "last_eval_step": step}


def save_final(ctx: Context) -> dict[str, Any]:
    pipeline.drain(ctx)
    resp = ctx.ports.require("training").save_weights_for_sampler("final").result()
    return {"final_weights": resp.path}

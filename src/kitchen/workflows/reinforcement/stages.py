"""Stages of the reinforcement-learning workflow."""

from __future__ import annotations

import math
from typing import Any

from kitchen.context import Context
from kitchen.losses.custom import custom_backward, custom_forward, logprobs_of
from kitchen.losses.divergences import k3, k3_grad
from kitchen.rl.advantages import group_advantages
from kitchen.rl.common import SummedLoss, adam, mix_seed
from kitchen.rl.rollouts import (
    RLDatum,
    Trajectory,
    reference_logprobs,
    rollout_groups,
    trajectory_datums,
)
from kitchen.workflows.common import pipeline
from kitchen.workflows.common.steps import checkpoint_due, drain, eval_due, log_step  # noqa: F401  (re-exported stages)
from kitchen.workflows.reinforcement.config import RLConfig
from kitchen.workflows.reinforcement.envs import make_source


def _cfg(ctx: Context) -> RLConfig:
    cfg = ctx.config
    if not isinstance(cfg, RLConfig):
        cfg = RLConfig.model_validate(cfg or {})
    return cfg


def setup(ctx: Context) -> None:
    """Build the env source and, with a KL penalty, the reference sampler (replayed).

    Replayed stages run before a resumed run restores its checkpoint, so the reference is
    always a snapshot of the *initial* weights.
    """
    cfg = _cfg(ctx)
    training = ctx.ports.require("training")
    ctx.vars["env_source"] = make_source(ctx, cfg)
    ctx.vars["model_info"] = training.get_info()
    if cfg.kl_beta > 0:
        ctx.vars["reference"] = training.save_weights_and_get_sampling_client("rl-reference")
    ctx.state.setdefault("step", 0)
    ctx.state.setdefault("optim_steps", 0)
    stats = getattr(ctx.vars["env_source"], "stats", None)
    if stats:
        ctx.metrics.log(dict(stats), step=0)


def num_steps(ctx: Context) -> int:
    return _cfg(ctx).num_steps


def _sample(ctx: Context, sampler: Any, step: int) -> list[list[Trajectory]]:
    cfg = _cfg(ctx)
    builders = ctx.vars["env_source"].train_batch(step, cfg.groups_per_batch)
    groups = rollout_groups(
        sampler, builders, temperature=cfg.temperature, seed=mix_seed(cfg.seed, step, 7)
    )
    reference = ctx.vars.get("reference")
    if reference is not None:
        reference_logprobs(reference, [t for g in groups for t in g])
    return groups


def rollout(ctx: Context) -> None:
    """Rollouts for this step: the prefetched batch if fresh enough, else sampled now."""
    cfg = _cfg(ctx)
    pipeline.drain(ctx)  # the sampler must see every submitted update
    n = ctx.index("step")
    sampler = ctx.ports.require("training").save_weights_and_get_sampling_client(f"rl-step-{n}")
    ctx.vars["sampler"] = sampler
    pre = ctx.state.pop("prefetched", None)
    stale = None
    if pre is not None and pre["step"] == n:
        stale = n - int(pre["sampler_step"])
        if stale <= cfg.max_off_policy_steps:
            ctx.vars["groups"] = [[Trajectory.from_json(t) for t in g] for g in pre["groups"]]
            ctx.vars["staleness"] = float(stale)
            return
    ctx.vars["groups"] = _sample(ctx, sampler, n)
    ctx.vars["staleness"] = 0.0


def _scales(cfg: RLConfig, trajs: list[Trajectory]) -> list[float]:
    if cfg.loss_normalization == "tokens":
        total = sum(t.num_action_tokens for t in trajs)
        return [1.0 / total if total else 0.0] * len(trajs)
    if cfg.loss_normalization == "sequences":
        return [1.0 / (len(trajs) * max(1, t.num_action_tokens)) for t in trajs]
    return [1.0] * len(trajs)


def _kl_term(
    ctx: Context, cfg: RLConfig, batch: list[RLDatum], scales: list[float]
) -> tuple[Any, float, int]:
    """Submit the k3 KL penalty's gradient (forward at the current weights, then
    cross_entropy with weights ``-β·scale·dk3/dlogp``); returns (future, Σk3, #tokens)."""
    training = ctx.ports.require("training")
    datums = [r.datum for r in batch]
    logps = logprobs_of(custom_forward(training, datums).result())
    grads = []
    total, count = 0.0, 0
    for r, lp, sc in zip(batch, logps, scales, strict=True):
        assert r.ref_logprobs is not None
        row = []
        for m, cur, ref in zip(r.mask, lp, r.ref_logprobs, strict=True):
            if m:
                total += k3(cur, ref)
                count += 1
                row.append(cfg.kl_beta * sc * k3_grad(cur, ref))
            else:
                row.append(0.0)
        grads.append(row)
    return custom_backward(training, datums, grads), total, count


def train(ctx: Context) -> None:
    """Advantages → datums → (PPO epochs x minibatches of forward_backward + optim_step).

    Submits every update without waiting, then (when pipelining) samples the next step's
    rollouts with the pre-update sampler while the backend trains.
    """
    cfg = _cfg(ctx)
    training = ctx.ports.require("training")
    groups: list[list[Trajectory]] = ctx.vars.pop("groups")
    n = ctx.index("step")
    # Advantages per group, then minibatches of whole groups.
    per_group: list[list[tuple[Trajectory, float]]] = []
    rewards: list[float] = []
    for g in groups:
        returns = [t.total_reward for t in g]
        rewards += returns
        adv = group_advantages(
            returns, normalize_std=cfg.normalize_std, leave_one_out=cfg.leave_one_out
        )
        per_group.append(list(zip(g, adv, strict=True)))
    mbs = [per_group[i :: cfg.num_minibatches] for i in range(cfg.num_minibatches)]
    batches: list[tuple[list[RLDatum], list[float]]] = []
    for mb in mbs:
        trajs = [t for g in mb for t, _ in g]
        scales = _scales(cfg, trajs)
        rl: list[RLDatum] = []
        sc: list[float] = []
        for (t, a), s in zip([x for g in mb for x in g], scales, strict=True):
            ds = trajectory_datums(t, a, s)
            rl += ds
            sc += [s] * len(ds)
        if rl:
            batches.append((rl, sc))
    lo, hi = cfg.clip_thresholds
    loss_cfg = (
        {"clip_low_threshold": lo, "clip_high_threshold": hi} if cfg.loss_fn == "ppo" else None
    )
    fbs: list[Any] = []
    opt = None
    kl_total, kl_count = 0.0, 0
    total_optim = cfg.num_steps * cfg.ppo_epochs * len(batches)
    for epoch in range(cfg.ppo_epochs):
        for rl, sc in batches:
            if cfg.kl_beta > 0:
                fut, tot, cnt = _kl_term(ctx, cfg, rl, sc)
                if epoch == 0:
                    kl_total += tot
                    kl_count += cnt
                fbs.append(fut)
            fut = training.forward_backward([r.datum for r in rl], cfg.loss_fn, loss_cfg)
            if epoch == 0:
                fbs.append(fut)
            k = int(ctx.state["optim_steps"])
            opt = training.optim_step(adam(cfg, k, total_optim))
            ctx.state["optim_steps"] = k + 1
    trajs_all = [t for g in groups for t in g]
    n_tok = sum(t.num_action_tokens for t in trajs_all)
    neg_lp = -sum(sum(x for tr in t.transitions for x in tr.logprobs) for t in trajs_all)
    metrics: dict[str, float] = {
        "reward": sum(rewards) / len(rewards),
        "reward/max": max(rewards),
        "reward/min": min(rewards),
        "reward/frac_groups_mixed": sum(1.0 for g in groups if len({t.total_reward for t in g}) > 1)
        / len(groups),
        "rollout/action_tokens": float(n_tok),
        "rollout/neg_logprob": neg_lp / n_tok if n_tok else 0.0,
        "rollout/staleness": float(ctx.vars.pop("staleness", 0.0)),
    }
    if cfg.kl_beta > 0:
        metrics["kl"] = kl_total / kl_count if kl_count else 0.0
    futures: dict[str, Any] = {"forward_backward": SummedLoss(fbs)} if fbs else {}
    if opt is not None:
        futures["optim_step"] = opt
    pipeline.submit(ctx, n + 1, futures, **metrics)
    ctx.state["step"] = n + 1
    if cfg.pipeline_rollouts and n + 1 < cfg.num_steps:
        groups_next = _sample(ctx, ctx.vars["sampler"], n + 1)
        ctx.state["prefetched"] = {
            "step": n + 1,
            "sampler_step": n,
            "groups": [[t.to_json() for t in g] for g in groups_next],
        }


def evaluate(ctx: Context) -> dict[str, Any]:
    """Mean reward on fixed held-out problems, sampled from the current weights."""
    cfg = _cfg(ctx)
    pipeline.drain(ctx)
    builders = ctx.vars["env_source"].eval_batch(cfg.eval_groups)
    if not builders:
        return {}
    step = int(ctx.state["step"])
    if ctx.state.get("last_eval_step") == step:
        return {}
    sampler = ctx.ports.require("training").save_weights_and_get_sampling_client(f"rl-eval-{step}")
    groups = rollout_groups(
        sampler, builders, temperature=cfg.temperature, seed=mix_seed(cfg.seed, -1, 11)
    )
    rewards = [t.total_reward for g in groups for t in g]
    val = sum(rewards) / len(rewards)
    if not math.isfinite(val):
        raise ValueError("evaluation reward is not finite")
    ctx.metrics.log({"val_reward": val}, step=step)
    return {"val_reward": val, "last_eval_step": step}


def save_final(ctx: Context) -> dict[str, Any]:
    pipeline.drain(ctx)
    resp = ctx.ports.require("training").save_weights_for_sampler("final").result()
    return {"final_weights": resp.path}

"""The noop adapters' tiny model: a hashed-bigram log-linear language model in pure Python.

The next-token distribution after input token ``x`` is::

    logits[v] = bias[v] + W[bucket(x)][v]        p = softmax(logits)

with ``bucket(x)`` a multiplicative hash of ``x`` into ``num_buckets`` rows. It is small
(``vocab_size * (num_buckets + 1)`` parameters), but it is a real model: losses depend on the
inputs, gradients are exact and analytic, and training lowers the loss.

Because the distribution depends only on the bucket, ``forward_backward`` computes at most
``num_buckets`` softmaxes per call and accumulates gradients per bucket in O(1) per position:
``dL/dlogits_h = Σ_i g_i · onehot(t_i) - (Σ_i g_i) · p_h`` where ``g_i = dL/dlogp_i``.

Parameters are stored as ``rows``: row 0 is ``bias``, row ``1 + h`` is ``W[h]``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kitchen.ports import losses as ref
from kitchen.ports.types import AdamParams, Datum

DEFAULT_BUCKETS = 16
INIT_STD = 0.02
_HASH_MULT = 2654435761  # Knuth's multiplicative hash constant
_FORMAT = "kitchen-noop-state/1"


def bucket_of(token: int, num_buckets: int) -> int:
    """Deterministic hash of a token id into ``[0, num_buckets)`` (high bits of a mult hash)."""
    return (((token * _HASH_MULT) & 0xFFFFFFFF) * num_buckets) >> 32


def init_rows(vocab_size: int, num_buckets: int, seed: int) -> list[list[float]]:
    """Small deterministic initial parameters from ``random.Random(seed)``."""
    rng = random.Random(f"kitchen-noop-init:{seed}:{vocab_size}:{num_buckets}")
    return [[rng.gauss(0.0, INIT_STD) for _ in range(vocab_size)] for _ in range(num_buckets + 1)]


def log_softmax(logits: Sequence[float]) -> tuple[list[float], list[float]]:
    """``(logp, p)`` for ``logits``, computed stably in float64."""
    m = max(logits)
    exps = [math.exp(x - m) for x in logits]
    z = math.fsum(exps)
    log_z = m + math.log(z)
    return [x - log_z for x in logits], [e / z for e in exps]


@dataclass
class Weights:
    """A frozen snapshot of the model's parameters (what a sampling client holds)."""

    vocab_size: int
    num_buckets: int
    rows: list[list[float]]
    _tables: dict[int, tuple[list[float], list[float]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def initial(cls, vocab_size: int, seed: int, num_buckets: int = DEFAULT_BUCKETS) -> Weights:
        return cls(vocab_size, num_buckets, init_rows(vocab_size, num_buckets, seed))

    def logits(self, bucket: int) -> list[float]:
        return [b + w for b, w in zip(self.rows[0], self.rows[1 + bucket], strict=True)]

    def table(self, bucket: int) -> tuple[list[float], list[float]]:
        """``(logp, p)`` of the next token after any input in ``bucket`` (cached)."""
        t = self._tables.get(bucket)
        if t is None:
            t = log_softmax(self.logits(bucket))
            self._tables[bucket] = t
        return t

    def bucket(self, token: int) -> int:
        return bucket_of(token, self.num_buckets)

    def copy(self) -> Weights:
        return Weights(self.vocab_size, self.num_buckets, [list(r) for r in self.rows])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "vocab_size": self.vocab_size,
            "num_buckets": self.num_buckets,
            "params": self.rows,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Weights:
        rows = [[float(x) for x in r] for r in obj["params"]]
        return cls(int(obj["vocab_size"]), int(obj["num_buckets"]), rows)


def _check_tokens(tokens: Sequence[int], vocab_size: int, where: str) -> None:
    for t in tokens:
        if not 0 <= t < vocab_size:
            raise ValueError(f"{where}: token id {t} is outside the vocabulary [0, {vocab_size})")


@dataclass
class Batch:
    """Per-datum logprobs and the loss of one ``forward`` pass, plus what backward needs."""

    logprobs: list[list[float]]
    loss_sum: float
    loss_mean: float
    num_tokens: int
    #: Per bucket: Σ g_i and {target: Σ g_i} (only filled when gradients are wanted).
    grad_scale: dict[int, float]
    grad_targets: dict[int, dict[int, float]]


def run_loss(
    weights: Weights,
    data: Sequence[Datum],
    loss_fn: str,
    loss_fn_config: Mapping[str, float] | None,
    want_grad: bool,
) -> Batch:
    """Forward pass with the loss per :mod:`kitchen.ports.losses` (inputs already validated)."""
    v = weights.vocab_size
    ref.check_config(loss_fn, loss_fn_config)
    lo, hi = ref.clip_thresholds(loss_fn_config) if loss_fn in ref.CLIPPED else (0.0, 0.0)
    beta = ref.dro_beta(loss_fn_config) if loss_fn == "dro" else 0.0
    all_lp: list[list[float]] = []
    loss_sum = 0.0
    total_weight = 0.0
    n_pos = 0
    gscale: dict[int, float] = {}
    gtarget: dict[int, dict[int, float]] = {}
    for i, datum in enumerate(data):
        inputs = datum.model_input.to_ints()
        inp = datum.loss_fn_inputs
        targets = [int(t) for t in inp["target_tokens"].data]
        _check_tokens(inputs, v, f"datum {i} model_input")
        _check_tokens(targets, v, f"datum {i} target_tokens")
        buckets = [weights.bucket(x) for x in inputs]
        lp = [weights.table(b)[0][t] for b, t in zip(buckets, targets, strict=True)]
        all_lp.append(lp)
        n_pos += len(lp)
        if loss_fn == "cross_entropy":
            w = [float(x) for x in inp["weights"].data]
            loss_sum += ref.cross_entropy(lp, w)
            total_weight += sum(w)
            grads = [-x for x in w]
        else:
            q = [float(x) for x in inp["logprobs"].data]
            adv = [float(x) for x in inp["advantages"].data]
            if loss_fn == "importance_sampling":
                loss_sum += ref.importance_sampling(lp, q, adv)
                grads = [-math.exp(a - b) * c for a, b, c in zip(lp, q, adv, strict=True)]
            elif loss_fn == "cispo":
                loss_sum += ref.cispo(lp, q, adv, lo, hi)
                # The clipped ratio is a constant weight (stop-gradient).
                grads = [
                    -min(max(math.exp(a - b), lo), hi) * c
                    for a, b, c in zip(lp, q, adv, strict=True)
                ]
            elif loss_fn == "dro":
                loss_sum += ref.dro(lp, q, adv, beta)
                grads = [-(c - beta * (a - b)) for a, b, c in zip(lp, q, adv, strict=True)]
            elif loss_fn == "gspo":
                m = inp.get("sequence_ratio_mask")
                mask = [float(x) for x in m.data] if m is not None else None
                loss_sum += ref.gspo(lp, q, adv, mask, lo, hi)
                s = ref.gspo_sequence_ratio(lp, q, mask)
                clipped_s = min(max(s, lo), hi)
                # d s_i / d logp_i = s; the min picks the unclipped term (gradient s·A_i)
                # unless clipping is active and smaller (gradient 0).
                grads = [-s * c if s * c <= clipped_s * c else 0.0 for c in adv]
            else:
                loss_sum += ref.ppo(lp, q, adv, lo, hi)
                grads = []
                for a, b, c in zip(lp, q, adv, strict=True):
                    r = math.exp(a - b)
                    unclipped, clipped = r * c, min(max(r, lo), hi) * c
                    # d/dlogp of min(r·A, clip(r)·A): r·A where the unclipped term is active.
                    grads.append(-unclipped if unclipped <= clipped else 0.0)
        if want_grad:
            for b, t, g in zip(buckets, targets, grads, strict=True):
                if g == 0.0:
                    continue
                gscale[b] = gscale.get(b, 0.0) + g
                row = gtarget.setdefault(b, {})
                row[t] = row.get(t, 0.0) + g
    if loss_fn == "cross_entropy":
        mean = loss_sum / total_weight if total_weight != 0 else 0.0
    else:
        mean = loss_sum / n_pos if n_pos else 0.0
    return Batch(all_lp, loss_sum, mean, n_pos, gscale, gtarget)


def accumulate_grads(weights: Weights, grads: list[list[float]], batch: Batch) -> None:
    """Add ``dL/dparams`` of ``batch`` into ``grads`` (same shape as ``weights.rows``)."""
    bias_grad = grads[0]
    for b, scale in batch.grad_scale.items():
        p = weights.table(b)[1]
        row = grads[1 + b]
        # dL/dlogits_b = Σ g_i onehot(t_i) - (Σ g_i) p_b ; the bias gets the same.
        row[:] = [g - scale * pv for g, pv in zip(row, p, strict=True)]
        bias_grad[:] = [g - scale * pv for g, pv in zip(bias_grad, p, strict=True)]
        for t, g in batch.grad_targets[b].items():
            row[t] += g
            bias_grad[t] += g


def zeros_like(rows: Sequence[Sequence[float]]) -> list[list[float]]:
    return [[0.0] * len(r) for r in rows]


def grad_norm(grads: Sequence[Sequence[float]]) -> float:
    return math.sqrt(math.fsum(g * g for r in grads for g in r))


@dataclass
class AdamState:
    """AdamW moments and step count, exactly as ``torch.optim.AdamW`` keeps them."""

    m: list[list[float]]
    v: list[list[float]]
    step: int = 0


def adamw_step(
    rows: list[list[float]], grads: list[list[float]], state: AdamState, hp: AdamParams
) -> dict[str, float]:
    """One AdamW step in place, matching ``torch.optim.AdamW`` (non-fused, float64 here).

    Global-norm clipping first when ``grad_clip_norm > 0`` (like
    ``torch.nn.utils.clip_grad_norm_``: scale by ``max_norm / (norm + 1e-6)`` when below 1),
    then decoupled weight decay ``p *= 1 - lr·wd``, then the bias-corrected Adam update
    ``p -= lr / (1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)``.
    """
    norm = grad_norm(grads)
    if hp.grad_clip_norm > 0:
        coef = hp.grad_clip_norm / (norm + 1e-6)
        if coef < 1.0:
            for r in grads:
                r[:] = [g * coef for g in r]
    state.step += 1
    t = state.step
    lr, b1, b2, eps = hp.learning_rate, hp.beta1, hp.beta2, hp.eps
    decay = 1.0 - lr * hp.weight_decay
    bc1 = 1.0 - b1**t
    bc2_sqrt = math.sqrt(1.0 - b2**t)
    step_size = lr / bc1
    neg_step = -step_size
    c1, c2 = 1.0 - b1, 1.0 - b2
    sqrt = math.sqrt
    for k, (p, g) in enumerate(zip(rows, grads, strict=True)):
        # torch: exp_avg.lerp_(grad, 1 - β1); exp_avg_sq.mul_(β2).addcmul_(grad, grad, 1 - β2)
        if c1 < 0.5:
            m = [mi + c1 * (gi - mi) for mi, gi in zip(state.m[k], g, strict=True)]
        else:
            m = [gi - (gi - mi) * b1 for mi, gi in zip(state.m[k], g, strict=True)]
        v = [b2 * vi + c2 * (gi * gi) for vi, gi in zip(state.v[k], g, strict=True)]
        state.m[k], state.v[k] = m, v
        # torch: param.mul_(1 - lr·wd); param.addcdiv_(exp_avg, denom, value=-step_size),
        # whose kernel computes param + (value · exp_avg) / denom in this order.
        rows[k] = [
            pi * decay + neg_step * mi / (sqrt(vi) / bc2_sqrt + eps)
            for pi, mi, vi in zip(p, m, v, strict=True)
        ]
    return {"grad_norm": norm, "learning_rate": lr, "step": float(t)}

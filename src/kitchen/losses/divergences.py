"""Divergences between a student and a teacher token distribution, with gradients.

The distributions are given as logprobs (or logits) over a *candidate set* of tokens at one
position: the whole vocabulary when a backend can provide it, or a subset (the target token
plus the teacher's top-k or sampled tokens), in which case both are renormalised over the set
(a restricted divergence, exact when the set is the vocabulary). ``temperature`` τ divides the
inputs before the softmax, as in Hinton et al. and TRL's GKD.

With ``q = softmax(student/τ)``, ``p = softmax(teacher/τ)`` and TRL's conventions:

- ``forward_kl``  = KL(p ‖ q)   (mode covering; the gradient is that of SFT on teacher soft labels)
- ``reverse_kl``  = KL(q ‖ p)   (mode seeking)
- ``jsd`` (β)     = β·KL(p ‖ m) + (1-β)·KL(q ‖ m),  m = β·p + (1-β)·q  — the generalised JSD of
  GKD (Agarwal et al.); β = 0 gives ``forward_kl`` and β = 1 ``reverse_kl``, as in TRL.

Each function returns the value and ``dL/dstudent`` (the gradient with respect to the
*inputs* ``student``, through the softmax and the temperature). Multiply by ``-1`` to get
``cross_entropy`` weights (see :mod:`kitchen.losses.custom`).

Token-level estimators (``k1``, ``k2``, ``k3``, Schulman's notation) estimate KL(q ‖ p) from
the logprobs of tokens sampled from ``q``; ``k3`` is the GRPO KL penalty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

DivergenceKind = Literal["forward_kl", "reverse_kl", "jsd"]
DIVERGENCES: tuple[DivergenceKind, ...] = ("forward_kl", "reverse_kl", "jsd")


def log_softmax(xs: Sequence[float], temperature: float = 1.0) -> list[float]:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = [x / temperature for x in xs]
    m = max(scaled)
    lse = m + math.log(sum(math.exp(x - m) for x in scaled))
    return [x - lse for x in scaled]


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def divergence(
    student: Sequence[float],
    teacher: Sequence[float],
    kind: DivergenceKind = "forward_kl",
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
) -> tuple[float, list[float]]:
    """``(value, dL/dstudent)`` for one position; see the module docstring."""
    if len(student) != len(teacher) or not student:
        raise ValueError("student and teacher need the same, non-zero number of candidates")
    s = log_softmax(student, temperature)
    t = log_softmax(teacher, temperature)
    q = [math.exp(x) for x in s]
    p = [math.exp(x) for x in t]
    if kind == "jsd":
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"jsd beta must be in [0, 1], got {beta}")
        if beta == 0.0:
            kind = "forward_kl"
        elif beta == 1.0:
            kind = "reverse_kl"
    if kind == "forward_kl":
        value = sum(pi * (ti - si) for pi, ti, si in zip(p, t, s, strict=True) if pi > 0)
        g = [-pi for pi in p]  # dL/ds
    elif kind == "reverse_kl":
        value = sum(qi * (si - ti) for qi, si, ti in zip(q, s, t, strict=True) if qi > 0)
        g = [qi * (si - ti) for qi, si, ti in zip(q, s, t, strict=True)]
    elif kind == "jsd":
        log_b, log_1b = math.log(beta), math.log1p(-beta)
        lm = [_logaddexp(log_b + ti, log_1b + si) for ti, si in zip(t, s, strict=True)]
        kl_t = sum(pi * (ti - mi) for pi, ti, mi in zip(p, t, lm, strict=True) if pi > 0)
        kl_s = sum(qi * (si - mi) for qi, si, mi in zip(q, s, lm, strict=True) if qi > 0)
        value = beta * kl_t + (1.0 - beta) * kl_s
        # d/ds_u of the whole expression simplifies to (1-β)·q_u·(s_u - log m_u).
        g = [(1.0 - beta) * qi * (si - mi) for qi, si, mi in zip(q, s, lm, strict=True)]
    else:
        raise ValueError(f"unknown divergence {kind!r}; choose one of {DIVERGENCES}")
    # Back through s = log_softmax(x / τ): dL/dx_v = (g_v - q_v·Σ g) / τ.
    total = sum(g)
    grad = [(gv - qv * total) / temperature for gv, qv in zip(g, q, strict=True)]
    return value, grad


def k1(logq: float, logp: float) -> float:
    """``log q - log p`` for x ~ q: unbiased for KL(q‖p), high variance, can be negative."""
    return logq - logp


def k2(logq: float, logp: float) -> float:
    """``½(log q - log p)²``: biased, low variance, non-negative."""
    return 0.5 * (logq - logp) ** 2


def k3(logq: float, logp: float) -> float:
    """``exp(log p - log q) - (log p - log q) - 1``: unbiased for KL(q‖p) and non-negative."""
    d = logp - logq
    return math.expm1(d) - d


def k3_grad(logq: float, logp: float) -> float:
    """``d k3 / d log q`` = ``1 - exp(log p - log q)``."""
    return -math.expm1(logp - logq)

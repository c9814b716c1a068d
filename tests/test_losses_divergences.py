"""Forward/reverse KL, generalised JSD(β) with temperature, and the k1/k2/k3 estimators:
float64 references, finite-difference gradients, TRL's GKD loss."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitchen.losses.divergences import divergence, k1, k2, k3, k3_grad, log_softmax

logits = st.lists(st.floats(min_value=-6.0, max_value=6.0), min_size=2, max_size=7)
temps = st.floats(min_value=0.3, max_value=3.0)
betas = st.floats(min_value=0.0, max_value=1.0)


def softmax64(xs: list[float], t: float) -> list[float]:
    m = max(x / t for x in xs)
    e = [math.exp(x / t - m) for x in xs]
    z = sum(e)
    return [v / z for v in e]


def kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def ref_div(s: list[float], t: list[float], kind: str, beta: float, temp: float) -> float:
    q, p = softmax64(s, temp), softmax64(t, temp)
    if kind == "forward_kl":
        return kl(p, q)
    if kind == "reverse_kl":
        return kl(q, p)
    if beta == 0.0:
        return kl(p, q)
    if beta == 1.0:
        return kl(q, p)
    m = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q, strict=True)]
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    s = draw(logits)
    t = draw(st.lists(st.floats(-6.0, 6.0), min_size=len(s), max_size=len(s)))
    return s, t


@settings(max_examples=300, deadline=None)
@given(pairs(), st.sampled_from(["forward_kl", "reverse_kl", "jsd"]), betas, temps)
def test_value_and_gradient(st_pair, kind, beta, temp) -> None:
    s, t = st_pair
    value, grad = divergence(s, t, kind, beta=beta, temperature=temp)
    assert value == pytest.approx(ref_div(s, t, kind, beta, temp), rel=1e-9, abs=1e-12)
    assert value >= -1e-12
    h = 1e-6
    for i in range(len(s)):
        up = [x + (h if j == i else 0.0) for j, x in enumerate(s)]
        dn = [x - (h if j == i else 0.0) for j, x in enumerate(s)]
        fd = (ref_div(up, t, kind, beta, temp) - ref_div(dn, t, kind, beta, temp)) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-4, abs=1e-7)
    # Shifting all student logits leaves the distribution unchanged: gradients sum to 0.
    assert sum(grad) == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(pairs(), temps)
def test_identical_distributions_have_zero_divergence(st_pair, temp) -> None:
    s, _ = st_pair
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        value, grad = divergence(s, s, kind, temperature=temp)  # type: ignore[arg-type]
        assert value == pytest.approx(0.0, abs=1e-12)
        assert all(abs(g) < 1e-12 for g in grad)


def test_log_softmax_normalises() -> None:
    ls = log_softmax([1.0, 2.0, 3.0], 0.5)
    assert sum(math.exp(x) for x in ls) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        log_softmax([1.0], 0.0)


@settings(max_examples=200, deadline=None)
@given(st.floats(-10, 0), st.floats(-10, 0))
def test_token_estimators(lq, lp) -> None:
    assert k1(lq, lp) == pytest.approx(lq - lp)
    assert k2(lq, lp) == pytest.approx(0.5 * (lq - lp) ** 2)
    r = math.exp(lp - lq)
    assert k3(lq, lp) == pytest.approx(r - math.log(r) - 1, rel=1e-9, abs=1e-12)
    assert k3(lq, lp) >= 0
    h = 1e-6
    assert k3_grad(lq, lp) == pytest.approx(
        (k3(lq + h, lp) - k3(lq - h, lp)) / (2 * h), rel=1e-4, abs=1e-6
    )


def test_k1_and_k3_are_unbiased_for_reverse_kl() -> None:
    q = [0.5, 0.3, 0.2]
    p = [0.2, 0.5, 0.3]
    exact = kl(q, p)
    e1 = sum(qi * k1(math.log(qi), math.log(pi)) for qi, pi in zip(q, p, strict=True))
    e3 = sum(qi * k3(math.log(qi), math.log(pi)) for qi, pi in zip(q, p, strict=True))
    assert e1 == pytest.approx(exact)
    assert e3 == pytest.approx(exact)


torch = pytest.importorskip("torch")


@settings(max_examples=60, deadline=None)
@given(pairs(), betas, temps)
def test_matches_trl_generalized_jsd(st_pair, beta, temp) -> None:
    gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    s, t = st_pair
    student = torch.tensor([[s]], dtype=torch.float64)
    teacher = torch.tensor([[t]], dtype=torch.float64)
    theirs = gkd.GKDTrainer.generalized_jsd_loss(
        student, teacher, beta=beta, temperature=temp, reduction="sum"
    )
    ours, _ = divergence(s, t, "jsd", beta=beta, temperature=temp)
    assert ours == pytest.approx(float(theirs), rel=1e-7, abs=1e-10)

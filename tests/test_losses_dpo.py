"""DPO/IPO/hinge losses: float64 references, finite-difference gradients, and TRL's own loss."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitchen.losses.dpo import dpo_batch, dpo_pair

logp = st.floats(min_value=-60.0, max_value=0.0, allow_nan=False)
betas = st.floats(min_value=0.01, max_value=2.0)
lens = st.integers(min_value=1, max_value=20)


def ref_loss(
    pc: float,
    pr: float,
    rc: float,
    rr: float,
    beta: float,
    kind: str,
    lc: int = 1,
    lr: int = 1,
    ls: float = 0.0,
) -> float:
    """Textbook formulas, written independently of the implementation."""
    z = (pc - rc) - (pr - rr)
    if kind == "sigmoid":

        def logsig(x: float) -> float:
            return -math.log1p(math.exp(-x)) if x > -30 else x

        return -(1 - ls) * logsig(beta * z) - ls * logsig(-beta * z)
    if kind == "ipo":
        return (((pc - rc) / lc - (pr - rr) / lr) - 1 / (2 * beta)) ** 2
    return max(0.0, 1 - beta * z)


@settings(max_examples=300, deadline=None)
@given(
    logp,
    logp,
    logp,
    logp,
    betas,
    st.sampled_from(["sigmoid", "ipo", "hinge"]),
    lens,
    lens,
    st.floats(min_value=0.0, max_value=0.4),
)
def test_pair_loss_matches_reference(pc, pr, rc, rr, beta, kind, lc, lr, ls) -> None:
    ls = ls if kind == "sigmoid" else 0.0
    got = dpo_pair(
        pc,
        pr,
        rc,
        rr,
        beta=beta,
        loss_type=kind,
        chosen_len=lc,
        rejected_len=lr,
        label_smoothing=ls,
    )
    want = ref_loss(pc, pr, rc, rr, beta, kind, lc, lr, ls)
    assert got.loss == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert got.chosen_reward == pytest.approx(beta * (pc - rc))
    assert got.rejected_reward == pytest.approx(beta * (pr - rr))


@settings(max_examples=300, deadline=None)
@given(logp, logp, logp, logp, betas, st.sampled_from(["sigmoid", "ipo", "hinge"]), lens, lens)
def test_pair_gradient_matches_finite_differences(pc, pr, rc, rr, beta, kind, lc, lr) -> None:
    got = dpo_pair(pc, pr, rc, rr, beta=beta, loss_type=kind, chosen_len=lc, rejected_len=lr)
    h = 1e-6
    z = beta * ((pc - rc) - (pr - rr))
    if kind == "hinge" and abs(1 - z) < 1e-4:
        return  # the kink
    fc = (
        ref_loss(pc + h, pr, rc, rr, beta, kind, lc, lr)
        - ref_loss(pc - h, pr, rc, rr, beta, kind, lc, lr)
    ) / (2 * h)
    fr = (
        ref_loss(pc, pr + h, rc, rr, beta, kind, lc, lr)
        - ref_loss(pc, pr - h, rc, rr, beta, kind, lc, lr)
    ) / (2 * h)
    assert got.grad_chosen == pytest.approx(fc, rel=1e-4, abs=1e-6)
    assert got.grad_rejected == pytest.approx(fr, rel=1e-4, abs=1e-6)


def test_batch_is_mean_with_metrics() -> None:
    loss, pairs, m = dpo_batch([-1.0, -2.0], [-3.0, -1.0], [-2.0, -2.0], [-2.0, -2.0], beta=0.5)
    assert loss == pytest.approx((pairs[0].loss + pairs[1].loss) / 2)
    assert m["rewards/accuracies"] == 0.5
    assert m["rewards/margins"] == pytest.approx(((0.5 + 0.5) + (0 - 0.5)) / 2)
    single = dpo_pair(-1.0, -3.0, -2.0, -2.0, beta=0.5)
    assert pairs[0].grad_chosen == pytest.approx(single.grad_chosen / 2)


def test_default_beta_and_zero_margin_loss() -> None:
    p = dpo_pair(-5.0, -5.0, -5.0, -5.0)
    assert p.loss == pytest.approx(math.log(2))
    assert p.grad_chosen == pytest.approx(-0.1 * 0.5)  # -beta * sigmoid(0)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        dpo_pair(0, 0, 0, 0, beta=0)
    with pytest.raises(ValueError):
        dpo_pair(0, 0, 0, 0, loss_type="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        dpo_batch([], [], [], [])


# --- TRL's own DPO loss on identical logprobs -------------------------------------------------

torch = pytest.importorskip("torch")


def _trl_dpo_loss(
    per_token_chosen: list[list[float]],
    per_token_rejected: list[list[float]],
    ref_c: list[float],
    ref_r: list[float],
    beta: float,
    kind: str,
) -> float:
    """Run TRL's ``DPOTrainer._compute_loss`` with a stand-in model whose per-token logprobs
    are exactly ours (TRL sums them over the completion mask itself)."""
    trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")
    rows = per_token_chosen + per_token_rejected
    seq = max(len(r) for r in rows) + 1  # +1: the first token is the prompt (mask 0)
    lp = torch.zeros(len(rows), seq - 1, dtype=torch.float64)
    mask = torch.zeros(len(rows), seq, dtype=torch.long)
    for i, r in enumerate(rows):
        lp[i, : len(r)] = torch.tensor(r, dtype=torch.float64)
        mask[i, 1 : 1 + len(r)] = 1
    lp = lp * mask[:, 1:]

    class FakeModel:
        training = True

        def __call__(self, **kwargs: Any) -> Any:
            n = lp.shape
            return SimpleNamespace(
                log_probs=lp,
                entropy=torch.zeros(n),
                mean_logits=torch.zeros(n),
                is_top1=torch.zeros(n, dtype=torch.bool),
                log_sum_sq_probs=torch.zeros(n),
                aux_loss=None,
            )

    acc = SimpleNamespace(device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x)
    fake_self = SimpleNamespace(
        model=FakeModel(),
        accelerator=acc,
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[kind],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
        _metrics={"train": __import__("collections").defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros(len(rows), seq, dtype=torch.long),
        "attention_mask": torch.ones(len(rows), seq, dtype=torch.long),
        "completion_mask": mask,
        "ref_chosen_logps": torch.tensor(ref_c, dtype=torch.float64),
        "ref_rejected_logps": torch.tensor(ref_r, dtype=torch.float64),
    }
    loss = trl_dpo.DPOTrainer._compute_loss(fake_self, fake_self.model, inputs, False)
    return float(loss)


tok_lp = st.lists(st.floats(min_value=-8.0, max_value=-0.01), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(tok_lp, tok_lp, st.floats(-30, -1), st.floats(-30, -1)), min_size=1, max_size=4
    ),
    st.floats(min_value=0.05, max_value=1.0),
    st.sampled_from(["sigmoid", "ipo", "hinge"]),
)
def test_matches_trl_dpo_loss(pairs, beta, kind) -> None:
    chosen = [p[0] for p in pairs]
    rejected = [p[1] for p in pairs]
    ref_c = [p[2] for p in pairs]
    ref_r = [p[3] for p in pairs]
    ours, _, _ = dpo_batch(
        [sum(c) for c in chosen],
        [sum(r) for r in rejected],
        ref_c,
        ref_r,
        beta=beta,
        loss_type=kind,
        chosen_lens=[len(c) for c in chosen],
        rejected_lens=[len(r) for r in rejected],
    )
    theirs = _trl_dpo_loss(chosen, rejected, ref_c, ref_r, beta, kind)
    assert ours == pytest.approx(theirs, rel=1e-7, abs=1e-9)

"""The noop model itself: exact gradients, torch-exact AdamW, determinism, speed."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitchen.adapters.noop import NoopSamplingClient, NoopTrainingClient
from kitchen.adapters.noop._model import AdamState, Weights, adamw_step, bucket_of, run_loss
from kitchen.ports import AdamParams, Datum, ModelInput, SamplingParams
from kitchen.testing.datums import PPO_CONFIG, ce_datum, make_sequences, rl_datum

VOCAB = 300  # small vocabulary keeps finite differences cheap
BUCKETS = 4


def _loss(rows: list[list[float]], data: list[Datum], loss_fn: str, cfg: Any) -> float:
    return run_loss(Weights(VOCAB, BUCKETS, rows), data, loss_fn, cfg, False).loss_sum


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[Datum], str, Any, int]:
    loss_fn = draw(st.sampled_from(["cross_entropy", "importance_sampling", "ppo"]))
    seed = draw(st.integers(0, 10_000))
    rng = random.Random(seed)
    n = draw(st.integers(1, 3))
    data = []
    for _ in range(n):
        length = rng.randint(1, 6)
        seq = [rng.randrange(VOCAB) for _ in range(length + 1)]
        if loss_fn == "cross_entropy":
            data.append(ce_datum(seq, [rng.choice([0.0, 1.0, 0.5, -0.25]) for _ in range(length)]))
        else:
            q = [-rng.uniform(4.0, 7.0) for _ in range(length)]
            data.append(rl_datum(seq, q, [rng.uniform(-1, 1) for _ in range(length)]))
    return data, loss_fn, (dict(PPO_CONFIG) if loss_fn == "ppo" else None), seed


@settings(max_examples=15, deadline=None)
@given(batches())
def test_gradients_match_finite_differences(case: tuple[list[Datum], str, Any, int]) -> None:
    data, loss_fn, cfg, seed = case
    client = NoopTrainingClient(vocab_size=VOCAB, seed=seed % 7, num_buckets=BUCKETS)
    client.forward_backward(data, loss_fn, cfg).result()  # type: ignore[arg-type]
    grads = client.grads
    rows = [list(r) for r in client.weights.rows]
    rng = random.Random(seed)
    # Probe the parameters that matter (used targets, used buckets) and some random ones.
    probes: set[tuple[int, int]] = set()
    for d in data:
        for x, t in zip(
            d.model_input.to_ints(), d.loss_fn_inputs["target_tokens"].data, strict=True
        ):
            b = 1 + bucket_of(x, BUCKETS)
            probes |= {(0, int(t)), (b, int(t)), (b, rng.randrange(VOCAB))}
    probes |= {(rng.randrange(BUCKETS + 1), rng.randrange(VOCAB)) for _ in range(5)}
    h = 1e-6
    for r, c in sorted(probes):
        plus = [list(x) for x in rows]
        minus = [list(x) for x in rows]
        plus[r][c] += h
        minus[r][c] -= h
        numeric = (_loss(plus, data, loss_fn, cfg) - _loss(minus, data, loss_fn, cfg)) / (2 * h)
        assert grads[r][c] == pytest.approx(numeric, rel=1e-5, abs=1e-7), (r, c, loss_fn)


def test_gradients_accumulate_across_calls_and_clear_after_step() -> None:
    c = NoopTrainingClient(vocab_size=VOCAB, num_buckets=BUCKETS)
    data = [ce_datum(s) for s in make_sequences(VOCAB, 2, 5)]
    c.forward_backward(data, "cross_entropy").result()
    once = [list(r) for r in c.grads]
    c.forward_backward(data, "cross_entropy").result()
    for a, b in zip(once, c.grads, strict=True):
        assert b == pytest.approx([2 * x for x in a], rel=1e-12, abs=1e-15)
    c.forward(data, "cross_entropy").result()  # forward leaves gradients alone
    for a, b in zip(once, c.grads, strict=True):
        assert b == pytest.approx([2 * x for x in a], rel=1e-12, abs=1e-15)
    c.optim_step(AdamParams()).result()
    assert all(g == 0.0 for r in c.grads for g in r)


# ---------------------------------------------------------------------------- AdamW

HP = AdamParams(learning_rate=0.1, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.5)


def test_adamw_matches_hand_computed_two_steps() -> None:
    rows = [[1.0, -2.0]]
    state = AdamState([[0.0, 0.0]], [[0.0, 0.0]])
    g1, g2 = [0.5, -1.0], [0.25, 2.0]
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.99, 1e-8, 0.5
    # Step 1, by hand: m = 0.1 g, v = 0.01 g², m̂ = g, v̂ = g², update = lr · g/(|g| + eps).
    exp1 = [
        p * (1 - lr * wd) - lr * g / (abs(g) + eps) for p, g in zip([1.0, -2.0], g1, strict=True)
    ]
    adamw_step(rows, [list(g1)], state, HP)
    assert rows[0] == pytest.approx(exp1, rel=1e-15, abs=0)
    # Step 2, by hand.
    exp2 = []
    for p, ga, gb in zip(exp1, g1, g2, strict=True):
        m = b1 * (1 - b1) * ga + (1 - b1) * gb
        v = b2 * (1 - b2) * ga * ga + (1 - b2) * gb * gb
        m_hat = m / (1 - b1**2)
        denom = math.sqrt(v) / math.sqrt(1 - b2**2) + eps
        exp2.append(p * (1 - lr * wd) - lr * m_hat / denom)
    adamw_step(rows, [list(g2)], state, HP)
    assert rows[0] == pytest.approx(exp2, rel=1e-14, abs=0)
    assert state.step == 2


def test_grad_clipping_scales_to_the_max_norm() -> None:
    rows = [[0.0, 0.0]]
    grads = [[3.0, 4.0]]  # norm 5
    metrics = adamw_step(
        rows, grads, AdamState([[0.0, 0.0]], [[0.0, 0.0]]), AdamParams(grad_clip_norm=1.0)
    )
    assert metrics["grad_norm"] == pytest.approx(5.0)
    assert grads[0] == pytest.approx([0.6, 0.8], rel=1e-6)


def test_adamw_and_clipping_match_torch_in_float64() -> None:
    torch = pytest.importorskip("torch")
    rng = random.Random(0)
    init = [[rng.gauss(0, 1) for _ in range(6)] for _ in range(2)]
    grads_seq = [[[rng.gauss(0, 1) for _ in range(6)] for _ in range(2)] for _ in range(4)]
    hp = AdamParams(
        learning_rate=0.05, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip_norm=1.0
    )
    rows = [list(r) for r in init]
    state = AdamState([[0.0] * 6 for _ in range(2)], [[0.0] * 6 for _ in range(2)])
    params = [torch.tensor(r, dtype=torch.float64, requires_grad=True) for r in init]
    opt = torch.optim.AdamW(
        params,
        lr=hp.learning_rate,
        betas=(hp.beta1, hp.beta2),
        eps=hp.eps,
        weight_decay=hp.weight_decay,
        foreach=False,
    )
    for gs in grads_seq:
        adamw_step(rows, [list(g) for g in gs], state, hp)
        for p, g in zip(params, gs, strict=True):
            p.grad = torch.tensor(g, dtype=torch.float64)
        torch.nn.utils.clip_grad_norm_(params, hp.grad_clip_norm, foreach=False)
        opt.step()
    for r, p in zip(rows, params, strict=True):
        # Same algorithm; vectorised torch kernels may round the last bit differently.
        assert r == pytest.approx(p.detach().tolist(), rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------------------- determinism


def _train(client: NoopTrainingClient, steps: int = 3) -> list[float]:
    data = [ce_datum(s) for s in make_sequences(512, 4, 10, seed=2)]
    losses = []
    for _ in range(steps):
        losses.append(client.forward_backward(data, "cross_entropy").result().metrics["loss:sum"])
        client.optim_step(AdamParams(learning_rate=1e-2, grad_clip_norm=1.0)).result()
    return losses


def test_same_seed_same_everything() -> None:
    a, b, c = NoopTrainingClient(seed=5), NoopTrainingClient(seed=5), NoopTrainingClient(seed=6)
    assert _train(a) == _train(b)
    assert a.state_dict() == b.state_dict()
    assert a.state_dict()["params"] != NoopTrainingClient(seed=6).state_dict()["params"]
    _train(c)
    assert a.state_dict()["params"] != c.state_dict()["params"]
    params = SamplingParams(max_tokens=10, seed=9)
    prompt = ModelInput.from_ints([5, 6, 7])
    sa = a.save_weights_and_get_sampling_client("s").sample(prompt, 3, params).result()
    sb = b.save_weights_and_get_sampling_client("s").sample(prompt, 3, params).result()
    assert sa == sb
    assert a.calls == b.calls


def test_untrained_sampler_is_the_training_clients_base_model() -> None:
    t = NoopTrainingClient(seed=4)
    s = NoopSamplingClient(seed=4)
    seq = make_sequences(512, 1, 8, seed=1)[0]
    fwd = t.forward([ce_datum(seq)], "cross_entropy").result().loss_fn_outputs[0]["logprobs"]
    assert s.compute_logprobs(ModelInput.from_ints(seq)).result()[1:] == list(fwd.data)


def test_state_round_trips_exactly_through_json(tmp_path: Any) -> None:
    a = NoopTrainingClient(seed=1, state_dir=str(tmp_path))
    _train(a, 2)
    path = a.save_state("ck", {"k": "v"}).result().path
    assert (tmp_path / "ck" / "noop_state.json").is_file()
    assert path == str(tmp_path / "ck")
    b = NoopTrainingClient(seed=99, state_dir=str(tmp_path))
    b.load_state(path).result()
    assert b.state_dict()["params"] == a.state_dict()["params"]
    assert b.state_dict()["adam_m"] == a.state_dict()["adam_m"]
    assert _train(a, 2) == _train(b, 2)


def test_forward_backward_is_fast() -> None:
    c = NoopTrainingClient()
    data = [ce_datum(s) for s in make_sequences(512, 8, 64)]
    c.forward_backward(data, "cross_entropy").result()
    started = time.perf_counter()
    for _ in range(10):
        c.forward_backward(data, "cross_entropy").result()
    per_call = (time.perf_counter() - started) / 10
    assert per_call < 0.05, f"forward_backward took {per_call * 1000:.1f} ms"

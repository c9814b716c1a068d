"""Every loss of the tinker SDK's ``LossFnType``: kitchen's reference formulas on hand-worked
values, the noop adapter's values and exact gradients against Tinker's documented torch
code, and the clear refusal of the two kitchen does not implement."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitchen.adapters.noop import NoopTrainingClient
from kitchen.adapters.noop._model import bucket_of
from kitchen.ports import Datum, TensorData
from kitchen.ports import losses as ref
from kitchen.ports.types import LOSS_FNS
from kitchen.testing.datums import ce_datum, rl_datum

VOCAB, BUCKETS = 200, 4
POLICY = ["importance_sampling", "ppo", "cispo", "dro", "gspo"]


def test_every_sdk_loss_is_implemented_or_refused_by_name() -> None:
    tinker_types = pytest.importorskip("tinker.types")
    from typing import get_args

    sdk = set(get_args(tinker_types.LossFnType))
    assert sdk == set(LOSS_FNS) | set(ref.UNSUPPORTED), sdk ^ (set(LOSS_FNS) | set(ref.UNSUPPORTED))
    assert set(LOSS_FNS) == set(ref.REQUIRED_INPUTS)


def test_reference_formulas_on_hand_worked_values() -> None:
    lp, q, a = [-1.0, -2.0], [-1.5, -1.0], [2.0, -1.0]
    r = [math.exp(0.5), math.exp(-1.0)]  # 1.6487, 0.3679
    # CISPO: clipped ratio (1.2, 0.8) weights logp·A.
    assert ref.cispo(lp, q, a) == pytest.approx(-(1.2 * -1.0 * 2.0 + 0.8 * -2.0 * -1.0))
    assert ref.cispo(lp, q, a, 0.0, 10.0) == pytest.approx(-(r[0] * -2.0 + r[1] * 2.0))
    # DRO: logp·A - β/2 (logp - q)².
    assert ref.dro(lp, q, a, 0.5) == pytest.approx(-((-2.0 - 0.25 * 0.25) + (2.0 - 0.25 * 1.0)))
    # GSPO: s = exp(mean log-ratio) = exp(-0.25) = 0.7788, clipped to 0.8.
    s = math.exp(-0.25)
    assert ref.gspo_sequence_ratio(lp, q, None) == pytest.approx(s)
    assert ref.gspo(lp, q, a) == pytest.approx(-(min(s * 2, 0.8 * 2) + min(s * -1, 0.8 * -1)))
    # The mask picks the positions the ratio averages over.
    assert ref.gspo_sequence_ratio(lp, q, [1.0, 0.0]) == pytest.approx(r[0])
    assert ref.gspo_sequence_ratio(lp, q, [0.0, 0.0]) == pytest.approx(s)  # none → all
    with pytest.raises(ValueError, match="beta"):
        ref.dro_beta({"beta": -1.0})
    with pytest.raises(ValueError, match="cispo"):
        ref.check_config("cispo", {"clip_low_threshold": 1.5})


@pytest.mark.parametrize("loss_fn", sorted(ref.UNSUPPORTED))
def test_unimplemented_sdk_losses_are_refused_with_the_reason(loss_fn: str) -> None:
    client = NoopTrainingClient(vocab_size=VOCAB)
    data = [rl_datum([1, 2, 3], [-1.0, -1.0], [1.0, 1.0])]
    with pytest.raises(ValueError, match=f"{loss_fn!r} is not supported: .+"):
        client.forward_backward(data, loss_fn).result()  # type: ignore[arg-type]


def _policy_data(rng: random.Random, loss_fn: str, n: int) -> list[Datum]:
    data = []
    for _ in range(n):
        length = rng.randint(2, 6)
        seq = [rng.randrange(VOCAB) for _ in range(length + 1)]
        # Sampler logprobs far from the model's (≈ -log 200 = -5.3): ratios land both
        # inside and outside [0.8, 1.2], so clipping is exercised.
        q = [-5.3 + rng.uniform(-0.6, 0.6) for _ in range(length)]
        adv = [rng.uniform(-1.5, 1.5) for _ in range(length)]
        d = rl_datum(seq, q, adv)
        if loss_fn == "gspo" and rng.random() < 0.7:
            m = [0.0] * rng.randint(0, length - 1)
            m += [1.0] * (length - len(m))
            d = Datum(
                d.model_input,
                {**d.loss_fn_inputs, "sequence_ratio_mask": TensorData(tuple(m), "float32")},
            )
        data.append(d)
    return data


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["cross_entropy", *POLICY]),
    st.integers(0, 10_000),
    st.sampled_from([None, {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}]),
)
def test_noop_values_and_gradients_match_tinkers_documented_torch(
    loss_fn: str, seed: int, cfg: Any
) -> None:
    torch = pytest.importorskip("torch")
    from tests.tinker_losses import doc_loss, python_reference

    if loss_fn == "dro":
        cfg = {"beta": 0.3} if cfg else None
    elif loss_fn not in ref.CLIPPED:
        cfg = None
    rng = random.Random(seed)
    if loss_fn == "cross_entropy":
        data = [ce_datum([rng.randrange(VOCAB) for _ in range(6)]) for _ in range(2)]
    else:
        data = _policy_data(rng, loss_fn, rng.randint(1, 3))
    client = NoopTrainingClient(vocab_size=VOCAB, seed=seed % 5, num_buckets=BUCKETS)
    out = client.forward_backward(data, loss_fn, cfg).result()  # type: ignore[arg-type]

    params = torch.tensor(client.weights.rows, dtype=torch.float64, requires_grad=True)
    total = torch.zeros((), dtype=torch.float64)
    py_total = 0.0
    for d, got in zip(data, out.loss_fn_outputs, strict=True):
        xs = d.model_input.to_ints()
        tgt = torch.tensor([int(t) for t in d.loss_fn_inputs["target_tokens"].data])
        rows = torch.tensor([1 + bucket_of(x, BUCKETS) for x in xs])
        logits = params[0] + params[rows]
        lp = torch.log_softmax(logits, -1)[torch.arange(len(xs)), tgt]
        assert list(got["logprobs"].data) == pytest.approx(lp.tolist(), abs=1e-5)
        total = total + doc_loss(loss_fn, lp, d.loss_fn_inputs, cfg)
        py_total += python_reference(loss_fn, lp.tolist(), d.loss_fn_inputs, cfg)
    total.backward()
    assert out.metrics["loss:sum"] == pytest.approx(float(total.detach()), rel=1e-9, abs=1e-9)
    assert out.metrics["loss:sum"] == pytest.approx(py_total, rel=1e-9, abs=1e-9)
    want = params.grad.tolist()
    for r, (g_row, w_row) in enumerate(zip(client.grads, want, strict=True)):
        assert g_row == pytest.approx(w_row, rel=1e-7, abs=1e-10), (loss_fn, r)

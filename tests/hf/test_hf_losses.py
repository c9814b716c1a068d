"""hf losses: values against the float64 reference formulas, gradients against plain torch."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch

from kitchen.ports import losses as ref
from tests.hf.conftest import ce_datum, logprobs_of, rl_datum, sequences

pytestmark = pytest.mark.hf

TIMEOUT = 120


def _expected(loss_fn: str, data: list[Any], lps: list[list[float]], cfg: Any = None) -> float:
    total = 0.0
    for d, lp in zip(data, lps, strict=True):
        inp = d.loss_fn_inputs
        if loss_fn == "cross_entropy":
            total += ref.cross_entropy(lp, inp["weights"].data)
        elif loss_fn == "importance_sampling":
            total += ref.importance_sampling(lp, inp["logprobs"].data, inp["advantages"].data)
        else:
            lo, hi = ref.clip_thresholds(cfg)
            total += ref.ppo(lp, inp["logprobs"].data, inp["advantages"].data, lo, hi)
    return total


def test_cross_entropy_matches_reference_with_completion_mask(make_client: Any) -> None:
    client = make_client()
    seqs = [*sequences(2, 9, seed=1), *sequences(1, 5, seed=2)]  # ragged → padding
    # Prompt tokens masked out (weight 0), completion weighted 1, one token weighted 2.
    weights = [[0.0] * 4 + [1.0] * (len(s) - 5) for s in seqs]
    weights[0][-1] = 2.0
    data = [ce_datum(s, w) for s, w in zip(seqs, weights, strict=True)]
    for method in ("forward", "forward_backward"):
        out = getattr(client, method)(data, "cross_entropy").result(TIMEOUT)
        lps = logprobs_of(out)
        assert [len(x) for x in lps] == [len(s) - 1 for s in seqs]
        expected = _expected("cross_entropy", data, lps)
        assert out.metrics["loss:sum"] == pytest.approx(expected, rel=1e-6, abs=1e-6)
        total_w = sum(sum(w) for w in weights)
        assert out.metrics["loss:mean"] == pytest.approx(expected / total_w, rel=1e-6)
        assert out.metrics["num_tokens"] == sum(len(s) - 1 for s in seqs)
        assert out.loss_fn_output_type == "ArrayRecord"


def test_logprobs_independent_of_padding(make_client: Any) -> None:
    client = make_client()
    short, long = sequences(1, 4, seed=3)[0], sequences(1, 12, seed=4)[0]
    alone = logprobs_of(client.forward([ce_datum(short)], "cross_entropy").result(TIMEOUT))[0]
    padded = logprobs_of(
        client.forward([ce_datum(long), ce_datum(short)], "cross_entropy").result(TIMEOUT)
    )[1]
    assert padded == pytest.approx(alone, abs=1e-5)


def _rl_data(client: Any, clip: bool) -> tuple[list[Any], list[list[float]]]:
    """RL datums whose sampler logprobs put the ratio well outside [0.8, 1.2] when ``clip``."""
    seqs = sequences(3, 8, seed=5)
    base = logprobs_of(client.forward([ce_datum(s) for s in seqs], "cross_entropy").result(TIMEOUT))
    rng = random.Random(0)
    shifts = [math.log(1.6), -math.log(1.6), math.log(1.05), -math.log(0.5)] if clip else [0.0]
    data = []
    for s, lp in zip(seqs, base, strict=True):
        # q = logp - shift → ratio = exp(shift): 1.6, 0.625 (clipped), 1.05 (inside), 2.0.
        q = [x - shifts[i % len(shifts)] for i, x in enumerate(lp)]
        adv = [rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5) for _ in lp]
        data.append(rl_datum(s, q, adv))
    return data, base


@pytest.mark.parametrize("loss_fn", ["importance_sampling", "ppo"])
def test_rl_losses_match_reference(make_client: Any, loss_fn: str) -> None:
    client = make_client()
    data, _ = _rl_data(client, clip=True)
    for method in ("forward", "forward_backward"):
        out = getattr(client, method)(data, loss_fn).result(TIMEOUT)
        lps = logprobs_of(out)
        expected = _expected(loss_fn, data, lps)
        assert out.metrics["loss:sum"] == pytest.approx(expected, rel=1e-6, abs=1e-6)
        n = sum(len(x) for x in lps)
        assert out.metrics["loss:mean"] == pytest.approx(expected / n, rel=1e-6)


def test_ppo_clipping_is_engaged_and_configurable(make_client: Any) -> None:
    client = make_client()
    data, _ = _rl_data(client, clip=True)
    out = client.forward(data, "ppo").result(TIMEOUT)
    lps = logprobs_of(out)
    ppo = out.metrics["loss:sum"]
    unclipped = _expected("importance_sampling", data, lps)
    # Ratios of 1.6, 0.625 and 2.0 lie outside [0.8, 1.2]: clipping must change the value.
    assert abs(ppo - unclipped) > 1e-2
    wide = {"clip_low_threshold": 0.1, "clip_high_threshold": 10.0}
    out_wide = client.forward(data, "ppo", wide).result(TIMEOUT)
    assert out_wide.metrics["loss:sum"] == pytest.approx(unclipped, rel=1e-6)
    assert out_wide.metrics["loss:sum"] == pytest.approx(
        _expected("ppo", data, lps, wide), rel=1e-6
    )
    with pytest.raises(ValueError, match="clip"):
        client.forward(data, "ppo", {"clip_low_threshold": 1.5})


def _reference_grads(model: Any, data: list[Any], loss_fn: str) -> dict[str, torch.Tensor]:
    """The loss computed datum by datum with plain torch ops, unpadded; grads by name."""
    model.zero_grad(set_to_none=True)
    model.train()
    total = torch.zeros((), dtype=torch.float64)
    lo, hi = ref.clip_thresholds(None)
    for d in data:
        ids = torch.tensor([d.model_input.to_ints()])
        tgt = torch.tensor(d.loss_fn_inputs["target_tokens"].data)
        logits = model(input_ids=ids).logits[0].float()
        lp = torch.log_softmax(logits, -1)[torch.arange(len(tgt)), tgt].double()
        if loss_fn == "cross_entropy":
            w = torch.tensor(d.loss_fn_inputs["weights"].data, dtype=torch.float64)
            total = total - (w * lp).sum()
        else:
            q = torch.tensor(d.loss_fn_inputs["logprobs"].data, dtype=torch.float64)
            a = torch.tensor(d.loss_fn_inputs["advantages"].data, dtype=torch.float64)
            r = torch.exp(lp - q)
            total = total - torch.minimum(r * a, r.clamp(lo, hi) * a).sum()
    total.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize(("mode", "loss_fn"), [("lora", "cross_entropy"), ("full", "ppo")])
def test_gradients_match_plain_torch(make_client: Any, mode: str, loss_fn: str) -> None:
    client = make_client(mode)
    if loss_fn == "cross_entropy":
        seqs = [*sequences(2, 8, seed=6), *sequences(1, 3, seed=7)]
        data = [ce_datum(s, [0.0, *([1.0] * (len(s) - 2))]) for s in seqs]
    else:
        data, _ = _rl_data(client, clip=True)
    client.forward_backward(data, loss_fn).result(TIMEOUT)
    model = client.model
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert got, "forward_backward produced no gradients"
    want = _reference_grads(model, data, loss_fn)
    assert set(got) == set(want)
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
    # LoRA: gradients only on adapter weights (B starts at zero, so A's grad is zero).
    if mode == "lora":
        assert all("lora_" in n for n in got)
        assert any(g.abs().sum() > 0 for n, g in got.items() if "lora_B" in n)


def test_lm_head_gradient_matches_finite_difference(make_client: Any) -> None:
    """d loss / d W[i, j] of the output head against a central difference in float64."""
    client = make_client("full", dtype="float32")
    seqs = sequences(2, 6, seed=8)
    data = [ce_datum(s) for s in seqs]
    client.forward_backward(data, "cross_entropy").result(TIMEOUT)
    model = client.model
    head = model.get_output_embeddings().weight
    tok = data[0].loss_fn_inputs["target_tokens"].data[0]
    analytic = float(head.grad[tok, 0])
    model.zero_grad(set_to_none=True)

    def loss_at(delta: float) -> float:
        with torch.no_grad():
            head[tok, 0] += delta
        try:
            return client.forward(data, "cross_entropy").result(TIMEOUT).metrics["loss:sum"]
        finally:
            with torch.no_grad():
                head[tok, 0] -= delta

    eps = 1e-2
    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=2e-2, abs=2e-3)


def test_forward_leaves_gradients_alone(make_client: Any) -> None:
    client = make_client()
    data = [ce_datum(s) for s in sequences(2, 6, seed=9)]
    client.forward(data, "cross_entropy").result(TIMEOUT)
    assert all(p.grad is None for p in client.model.parameters())
    client.forward_backward(data, "cross_entropy").result(TIMEOUT)
    grads = {n: p.grad.clone() for n, p in client.model.named_parameters() if p.grad is not None}
    client.forward(data, "cross_entropy").result(TIMEOUT)
    for n, p in client.model.named_parameters():
        if n in grads:
            assert torch.equal(p.grad, grads[n])


def test_gradients_accumulate_across_calls(make_client: Any) -> None:
    client = make_client()
    data = [ce_datum(s) for s in sequences(2, 6, seed=10)]
    client.forward_backward(data, "cross_entropy").result(TIMEOUT)
    once = {n: p.grad.clone() for n, p in client.model.named_parameters() if p.grad is not None}
    client.forward_backward(data, "cross_entropy").result(TIMEOUT)
    for n, p in client.model.named_parameters():
        if n in once:
            torch.testing.assert_close(p.grad, 2 * once[n])


def test_bad_inputs_raise_value_error(make_client: Any) -> None:
    client = make_client()
    seq = sequences(1, 6, seed=11)[0]
    with pytest.raises(ValueError, match="weights"):
        client.forward_backward([rl_datum(seq, [0.0] * 6, [1.0] * 6)], "cross_entropy")
    with pytest.raises(ValueError, match="unknown loss_fn"):
        client.forward([ce_datum(seq)], "nope")  # type: ignore[arg-type]
    bad = ce_datum([*seq[:-1], 10_000])
    with pytest.raises(ValueError, match="vocabulary"):
        client.forward([bad], "cross_entropy").result(TIMEOUT)
    # Extra inputs a loss does not use are ignored.
    extra = rl_datum(seq, [0.0] * 6, [1.0] * 6)
    extra = type(extra)(
        extra.model_input,
        {**extra.loss_fn_inputs, "weights": ce_datum(seq).loss_fn_inputs["weights"]},
    )
    out = client.forward([extra], "importance_sampling").result(TIMEOUT)
    assert math.isfinite(out.metrics["loss:sum"])


@pytest.mark.parametrize(
    ("loss_fn", "cfg", "packing"),
    [
        ("cispo", None, False),
        ("cispo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}, False),
        ("dro", {"beta": 0.3}, False),
        ("gspo", None, False),
        ("gspo", None, True),
    ],
)
def test_new_policy_losses_match_tinkers_documented_torch(
    make_client: Any, loss_fn: str, cfg: Any, packing: bool
) -> None:
    """cispo / dro / gspo: values against the float64 reference formulas, gradients (with
    Tinker's stop-gradients) against its documented torch code run datum by datum."""
    from kitchen.ports import Datum, TensorData
    from tests.tinker_losses import doc_loss, python_reference

    client = make_client("lora", packing=packing)
    data, _ = _rl_data(client, clip=True)
    if loss_fn == "gspo":  # the sequence ratio over the last positions only (a "completion")
        data = [
            Datum(
                d.model_input,
                {
                    **d.loss_fn_inputs,
                    "sequence_ratio_mask": TensorData(
                        tuple([0.0] * 3 + [1.0] * (d.model_input.length - 3)), "float32"
                    ),
                },
            )
            for d in data[:2]
        ] + data[2:]
    out = client.forward_backward(data, loss_fn, cfg).result(TIMEOUT)
    lps = logprobs_of(out)
    expected = sum(
        python_reference(loss_fn, lp, d.loss_fn_inputs, cfg)
        for d, lp in zip(data, lps, strict=True)
    )
    assert out.metrics["loss:sum"] == pytest.approx(expected, rel=1e-6, abs=1e-6)
    model = client.model
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    total = torch.zeros((), dtype=torch.float64)
    for d in data:
        ids = torch.tensor([d.model_input.to_ints()])
        tgt = torch.tensor(d.loss_fn_inputs["target_tokens"].data)
        logits = model(input_ids=ids).logits[0].float()
        lp = torch.log_softmax(logits, -1)[torch.arange(len(tgt)), tgt].double()
        total = total + doc_loss(loss_fn, lp, d.loss_fn_inputs, cfg)
    total.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    assert got and set(got) == set(want)
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)

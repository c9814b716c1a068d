"""Packing inside HfTrainingClient: same losses, logprobs and gradients as the padded path,
per-datum outputs in call order, and an SFT run with packing whose loss falls."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch

from kitchen.ports import AdamParams
from tests.hf.conftest import VOCAB, ce_datum, logprobs_of, rl_datum

pytestmark = pytest.mark.hf

TIMEOUT = 120


def _mixed(n: int = 7, seed: int = 3) -> list[list[int]]:
    """Sequences of very different lengths (so packing actually combines some)."""
    rng = random.Random(seed)
    lengths = [3, 30, 5, 17, 2, 25, 9, 12, 40, 6][:n]
    return [[rng.randrange(4, VOCAB) for _ in range(k + 1)] for k in lengths]


def _ce_batch() -> list[Any]:
    rng = random.Random(7)
    out = []
    for s in _mixed():
        w = [float(rng.random() < 0.7) * rng.uniform(0.5, 2.0) for _ in range(len(s) - 1)]
        out.append(ce_datum(s, w))
    return out


def _grads(client: Any) -> dict[str, torch.Tensor]:
    return {
        n: p.grad.detach().clone() for n, p in client.model.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_packed_equals_padded_loss_logprobs_and_gradients(make_client: Any, mode: str) -> None:
    data = _ce_batch()
    plain = make_client(mode)
    packed = make_client(mode, packing=True)
    out_plain = plain.forward_backward(data, "cross_entropy").result(TIMEOUT)
    out_packed = packed.forward_backward(data, "cross_entropy").result(TIMEOUT)
    # Packing really happened: fewer rows than datums.
    batch = packed._collate(packed._ensure(), list(data))
    assert batch.input_ids.shape[0] < len(data)
    assert batch.input_ids.shape[1] == max(d.model_input.length for d in data)

    assert out_packed.metrics["loss:sum"] == pytest.approx(out_plain.metrics["loss:sum"], rel=1e-5)
    assert out_packed.metrics["num_tokens"] == out_plain.metrics["num_tokens"]
    lp_plain, lp_packed = logprobs_of(out_plain), logprobs_of(out_packed)
    assert [len(x) for x in lp_packed] == [d.model_input.length for d in data]  # in order
    for a, b in zip(lp_plain, lp_packed, strict=True):
        assert b == pytest.approx(a, abs=2e-5)
    g_plain, g_packed = _grads(plain), _grads(packed)
    assert g_plain.keys() == g_packed.keys() and g_plain
    for name, g in g_plain.items():
        torch.testing.assert_close(g_packed[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_packed_forward_and_rl_losses_match(make_client: Any) -> None:
    seqs = _mixed(6)
    rng = random.Random(1)
    data = [
        rl_datum(s, [-rng.uniform(3, 6) for _ in s[1:]], [rng.uniform(-1, 1) for _ in s[1:]])
        for s in seqs
    ]
    plain = make_client()
    packed = make_client(pack_length=64, packing=True)
    for loss_fn in ("importance_sampling", "ppo"):
        a = plain.forward(data, loss_fn).result(TIMEOUT)
        b = packed.forward(data, loss_fn).result(TIMEOUT)
        assert b.metrics["loss:sum"] == pytest.approx(a.metrics["loss:sum"], rel=1e-5)
        for x, y in zip(logprobs_of(a), logprobs_of(b), strict=True):
            assert y == pytest.approx(x, abs=2e-5)
    # pack_length=64 fits the whole call in 2 rows of ≤ 64 tokens.
    batch = packed._collate(packed._ensure(), data)
    assert batch.input_ids.shape[0] == 2


def test_packed_training_steps_track_padded_training(make_client: Any) -> None:
    data = _ce_batch()
    adam = AdamParams(learning_rate=1e-2)
    plain, packed = make_client(), make_client(packing=True)
    for _ in range(3):
        for c in (plain, packed):
            c.forward_backward(data, "cross_entropy")
            c.optim_step(adam).result(TIMEOUT)
    a = plain.forward(data, "cross_entropy").result(TIMEOUT).metrics["loss:sum"]
    b = packed.forward(data, "cross_entropy").result(TIMEOUT).metrics["loss:sum"]
    assert b == pytest.approx(a, rel=1e-4)


def test_set_packing_switches_at_runtime(make_client: Any) -> None:
    client = make_client()
    assert client.packing is False
    client.set_packing(True)
    assert client.packing is True


def test_sft_run_with_packing_on_mixed_lengths_loss_falls(tmp_path: Path) -> None:
    from kitchen.launch import run_recipe
    from kitchen.recipes.builtin import sft

    rng = random.Random(0)
    rows = []
    words = "the cook stirs a pot of soup with salt and bread while onions fry slowly".split()
    for i in range(48):
        k = rng.choice([2, 4, 8, 16, 24])
        text = " ".join(words[(i + j) % len(words)] for j in range(k))
        rows.append({"prompt": f"say {k} words:", "completion": " " + text})
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_recipe(
        sft(),
        adapters="hf",
        overrides=[
            f"dataset={data}",
            "packing=true",
            "batch_size=8",
            "epochs=3",
            "learning_rate=1e-2",
            "checkpoint_every=0",
            "max_length=64",
            "model.config.hidden_size=32",
            "model.config.intermediate_size=64",
        ],
        run_dir=tmp_path / "run",
        stage_events=False,
    )
    losses = [r["loss"] for r in result.run_dir.metrics() if "loss" in r]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2, losses
    assert result.context.ports.training.packing is True

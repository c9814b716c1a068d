"""QLoRA on CPU: 4-bit NF4 base weights (bitsandbytes Params4bit) + trainable LoRA."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

import torch

from kitchen.ports import AdamParams, ModelInput, SamplingParams
from tests.hf.conftest import ce_datum, logprobs_of, sequences

pytestmark = pytest.mark.hf

TIMEOUT = 120


def _four_bit(model: Any) -> list[tuple[str, Any]]:
    from kitchen.adapters.hf.model_spec import is_4bit

    return [(n, p) for n, p in model.named_parameters() if is_4bit(p)]


def test_qlora_trains_on_cpu(make_client: Any, tmp_path: Path) -> None:
    client = make_client("qlora", state_dir=tmp_path / "q")
    model = client.model
    quantised = _four_bit(model)
    assert quantised, "no 4-bit base weights"
    assert all(type(p).__name__ == "Params4bit" and not p.requires_grad for _, p in quantised)
    assert all(p.quant_state.quant_type == "nf4" for _, p in quantised)
    base_before = {n: p.detach().clone() for n, p in quantised}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert lora_before and all("lora_" in n for n in lora_before)

    data = [ce_datum(s) for s in sequences(4, 10, seed=0)]
    losses = []
    for _ in range(4):
        fb = client.forward_backward(data, "cross_entropy")
        client.optim_step(AdamParams(learning_rate=3e-2)).result(TIMEOUT)
        losses.append(fb.result(TIMEOUT).metrics["loss:mean"])
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    after = dict(model.named_parameters())
    assert any(not torch.equal(after[n], v) for n, v in lora_before.items())
    assert all(torch.equal(after[n], v) for n, v in base_before.items())

    # forward (eval mode) must agree with forward_backward (train mode) on 4-bit layers.
    fwd = logprobs_of(client.forward(data, "cross_entropy").result(TIMEOUT))
    fb = logprobs_of(client.forward_backward(data, "cross_entropy").result(TIMEOUT))
    for a, b in zip(fwd, fb, strict=True):
        assert a == pytest.approx(b, abs=1e-5)

    info = client.get_info()
    assert info.is_lora and info.total_params is not None and info.trainable_params is not None
    assert info.trainable_params < info.total_params


def test_qlora_snapshot_sampling_and_resume(make_client: Any, tmp_path: Path) -> None:
    client = make_client("qlora", state_dir=tmp_path / "q")
    data = [ce_datum(s) for s in sequences(2, 8, seed=1)]
    client.forward_backward(data, "cross_entropy")
    client.optim_step(AdamParams(learning_rate=1e-2))
    sampler = client.save_weights_and_get_sampling_client("q")
    path = client.save_state("q1").result(TIMEOUT).path
    seq = sequences(1, 8, seed=2)[0]
    want = logprobs_of(client.forward([ce_datum(seq)], "cross_entropy").result(TIMEOUT))[0]
    got = sampler.compute_logprobs(ModelInput.from_ints(seq)).result(TIMEOUT)
    assert got[1:] == pytest.approx(want, abs=1e-5)
    out = sampler.sample(ModelInput.from_ints(seq), 2, SamplingParams(max_tokens=4, seed=0))
    assert all(len(s.tokens) >= 1 for s in out.result(TIMEOUT).sequences)

    other = make_client("qlora", state_dir=tmp_path / "r")
    other.load_state(path).result(TIMEOUT)
    again = logprobs_of(other.forward([ce_datum(seq)], "cross_entropy").result(TIMEOUT))[0]
    assert again == want

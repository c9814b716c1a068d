"""HfTrainingClient: training in each mode, exact resume, torn checkpoints, futures, info."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch
from safetensors.torch import load_file

from kitchen.errors import CheckpointError
from kitchen.ports import AdamParams, ModelInput, SamplingParams, TrainingClient
from tests.hf.conftest import VOCAB, ce_datum, logprobs_of, sequences

pytestmark = pytest.mark.hf

TIMEOUT = 120
ADAM = AdamParams(learning_rate=2e-2, weight_decay=0.01, grad_clip_norm=1.0)


def _batch(seed: int = 0) -> list[Any]:
    return [ce_datum(s) for s in sequences(4, 10, seed=seed)]


def _step(client: Any, data: list[Any], adam: AdamParams = ADAM) -> float:
    fb = client.forward_backward(data, "cross_entropy")
    client.optim_step(adam).result(TIMEOUT)
    return float(fb.result(TIMEOUT).metrics["loss:mean"])


def test_import_loads_nothing_heavy() -> None:
    code = "import sys, kitchen.adapters.hf as h; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_client_is_a_training_client_and_lazy(make_client: Any) -> None:
    client = make_client()
    assert isinstance(client, TrainingClient)
    assert client._loaded is None  # nothing loaded until the first call
    client.load().result(TIMEOUT)
    assert client._loaded is not None
    assert client.tokenizer_vocab_size == VOCAB


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_loss_falls(make_client: Any, mode: str) -> None:
    client = make_client(mode)
    data = _batch()
    losses = [_step(client, data, AdamParams(learning_rate=3e-2)) for _ in range(10)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.1, losses


def test_optim_step_metrics_and_clipping(make_client: Any) -> None:
    client = make_client()
    data = _batch()
    client.forward_backward(data, "cross_entropy").result(TIMEOUT)
    norm = math.sqrt(
        sum(
            float(p.grad.double().pow(2).sum())
            for p in client.model.parameters()
            if p.grad is not None
        )
    )
    out = client.optim_step(AdamParams(learning_rate=1e-3, grad_clip_norm=norm / 10)).result(
        TIMEOUT
    )
    assert out.metrics is not None
    assert out.metrics["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert out.metrics["learning_rate"] == 1e-3
    assert all(p.grad is None for p in client.model.parameters())  # zeroed


def test_futures_pipeline_in_order(make_client: Any) -> None:
    client = make_client()
    data = _batch()
    f1 = client.forward_backward(data, "cross_entropy")
    f2 = client.optim_step(ADAM)
    f3 = client.forward_backward(data, "cross_entropy")
    f4 = client.optim_step(ADAM)
    # Nothing awaited yet: the calls return at once and run on the worker in order.
    o3 = f3.result(TIMEOUT)
    assert f1.done() and f2.done()
    o1 = f1.result(TIMEOUT)
    assert f2.result(TIMEOUT).metrics["step"] == 1.0
    assert f4.result(TIMEOUT).metrics["step"] == 2.0
    assert o3.metrics["loss:sum"] < o1.metrics["loss:sum"]
    assert all(f.done() for f in (f1, f2, f3, f4))


def _weights(client: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in client.model.named_parameters()}


def _adam_state(client: Any) -> list[dict[str, torch.Tensor]]:
    opt = client._optimizer
    return [
        {k: v.clone() for k, v in opt.state[p].items()}
        for g in opt.param_groups
        for p in g["params"]
    ]


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_resume_is_bit_identical(make_client: Any, tmp_path: Path, mode: str) -> None:
    extra = {"lora": {"rank": 4, "alpha": 8, "dropout": 0.1}} if mode == "lora" else {}
    batches = [_batch(seed) for seed in range(6)]
    a = make_client(mode, state_dir=tmp_path / "a", **extra)
    for b in batches[:3]:
        _step(a, b)
    path = a.save_state("mid", {"data_position": "3"}).result(TIMEOUT).path
    for b in batches[3:]:
        _step(a, b)
    weights_a, adam_a = _weights(a), _adam_state(a)

    b_client = make_client(mode, state_dir=tmp_path / "b", **extra)
    b_client.load_state(path).result(TIMEOUT)
    for b in batches[3:]:
        _step(b_client, b)
    weights_b, adam_b = _weights(b_client), _adam_state(b_client)

    assert weights_a.keys() == weights_b.keys()
    for n in weights_a:
        assert torch.equal(weights_a[n], weights_b[n]), n
    assert len(adam_a) == len(adam_b)
    for sa, sb in zip(adam_a, adam_b, strict=True):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


def test_state_layout_has_no_pickle(make_client: Any, tmp_path: Path) -> None:
    client = make_client(state_dir=tmp_path / "s")
    _step(client, _batch())
    path = Path(client.save_state("ck", {"data_position": "17"}).result(TIMEOUT).path)
    assert path == (tmp_path / "s" / "ck").resolve()
    names = sorted(p.name for p in path.iterdir())
    assert names == [
        "complete.json",
        "optimizer.json",
        "optimizer.safetensors",
        "rng.json",
        "rng.safetensors",
        "spec.json",
        "user_metadata.json",
        "weights.safetensors",
    ]
    assert json.loads((path / "user_metadata.json").read_text()) == {"data_position": "17"}
    rng = load_file(path / "rng.safetensors")
    assert rng["torch_cpu"].dtype == torch.uint8
    opt = json.loads((path / "optimizer.json").read_text())
    assert opt["num_steps"] == 1 and set(opt["steps"].values()) == {1}
    marker = json.loads((path / "complete.json").read_text())
    assert set(marker["files"]) == set(names) - {"complete.json"}
    from kitchen.adapters.hf.state import read_user_metadata

    assert read_user_metadata(path) == {"data_position": "17"}


def test_save_state_keeps_other_files_and_overwrites(make_client: Any, tmp_path: Path) -> None:
    """The run's checkpoint stage writes run_state.json into the same directory first."""
    client = make_client(state_dir=tmp_path / "ckpts")
    (tmp_path / "ckpts" / "c1").mkdir(parents=True)
    (tmp_path / "ckpts" / "c1" / "run_state.json").write_text("{}")
    client.save_state("c1").result(TIMEOUT)  # before any optim step: no optimizer file
    assert not (tmp_path / "ckpts" / "c1" / "optimizer.safetensors").exists()
    _step(client, _batch())
    client.save_state("c1").result(TIMEOUT)
    assert (tmp_path / "ckpts" / "c1" / "run_state.json").read_text() == "{}"
    assert (tmp_path / "ckpts" / "c1" / "optimizer.safetensors").exists()
    client.load_state("c1").result(TIMEOUT)  # a bare name resolves under state_dir


def test_load_state_before_first_step(make_client: Any, tmp_path: Path) -> None:
    a = make_client(state_dir=tmp_path / "a")
    path = a.save_state("init").result(TIMEOUT).path
    before = _weights(a)
    _step(a, _batch())
    a.load_state(path).result(TIMEOUT)
    assert a._optimizer is None
    after = _weights(a)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_torn_and_missing_checkpoints_raise(make_client: Any, tmp_path: Path) -> None:
    client = make_client(state_dir=tmp_path / "s")
    _step(client, _batch())
    path = Path(client.save_state("ok").result(TIMEOUT).path)

    torn = tmp_path / "torn"
    torn.mkdir()
    for f in ("weights.safetensors", "optimizer.json"):
        (torn / f).write_bytes((path / f).read_bytes())  # everything but the marker
    with pytest.raises(CheckpointError, match=str(torn)):
        client.load_state(str(torn)).result(TIMEOUT)
    with pytest.raises(CheckpointError, match="does not exist"):
        client.load_state(str(tmp_path / "nope")).result(TIMEOUT)

    data = bytearray((path / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        client.load_state(str(path)).result(TIMEOUT)
    # The client is still usable after the failed loads.
    assert math.isfinite(_step(client, _batch()))


def test_checkpoint_from_other_spec_is_refused(make_client: Any, tmp_path: Path) -> None:
    full = make_client("full", state_dir=tmp_path / "f")
    path = full.save_state("full").result(TIMEOUT).path
    lora = make_client("lora", state_dir=tmp_path / "l")
    with pytest.raises(CheckpointError, match="does not fit"):
        lora.load_state(path).result(TIMEOUT)


def test_bad_checkpoint_names(make_client: Any) -> None:
    client = make_client()
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            client.save_state(bad)


def test_get_info(make_client: Any) -> None:
    info = make_client("lora").get_info()
    assert info.is_lora and info.lora_rank == 4
    assert info.model_data.arch == "llama"
    assert info.trainable_params is not None and info.total_params is not None
    assert 0 < info.trainable_params < info.total_params
    full = make_client("full").get_info()
    assert not full.is_lora and full.lora_rank is None
    assert full.trainable_params == full.total_params


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_sampler_weights_round_trip(make_client: Any, mode: str) -> None:
    from kitchen.adapters.hf.sampling import HfSamplingClient

    client = make_client(mode)
    _step(client, _batch())
    path = client.save_weights_for_sampler("w1").result(TIMEOUT).path
    names = set(os.listdir(path))
    expected = "adapter_model.safetensors" if mode == "lora" else "model.safetensors"
    assert expected in names and "complete.json" in names
    snap = client.save_weights_and_get_sampling_client("snap")
    loaded = HfSamplingClient.from_weights(path)
    seq = sequences(1, 8, seed=3)[0]
    want = logprobs_of(client.forward([ce_datum(seq)], "cross_entropy").result(TIMEOUT))[0]
    for sampler in (snap, loaded):
        got = sampler.compute_logprobs(ModelInput.from_ints(seq)).result(TIMEOUT)
        assert got[0] is None
        assert got[1:] == pytest.approx(want, abs=1e-5)
    params = SamplingParams(max_tokens=5, seed=9)
    a = snap.sample(ModelInput.from_ints(seq), 2, params).result(TIMEOUT)
    b = loaded.sample(ModelInput.from_ints(seq), 2, params).result(TIMEOUT)
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]


def test_snapshot_is_isolated_from_training(make_client: Any) -> None:
    client = make_client()
    data = _batch()
    _step(client, data)
    sampler = client.save_weights_and_get_sampling_client("s")  # returns before the copy
    _step(client, data)  # queued after the snapshot
    seq = sequences(1, 8, seed=4)[0]
    snap_lp = sampler.compute_logprobs(ModelInput.from_ints(seq)).result(TIMEOUT)
    live_lp = logprobs_of(client.forward([ce_datum(seq)], "cross_entropy").result(TIMEOUT))[0]
    assert max(abs(x - y) for x, y in zip(snap_lp[1:], live_lp, strict=True)) > 1e-6
    # The snapshot shares the frozen base weights instead of copying them.
    base = {id(p) for p in client.model.parameters() if not p.requires_grad}
    assert base and base <= {id(p) for p in sampler.model.parameters()}


def test_model_spec_validation() -> None:
    from pydantic import ValidationError

    from kitchen.adapters.hf.model_spec import ModelSpec

    with pytest.raises(ValidationError, match="exactly one"):
        ModelSpec(path="/x", hub_id="a/b")
    with pytest.raises(ValidationError, match="model_type"):
        ModelSpec(config={"hidden_size": 8})
    with pytest.raises(ValidationError):
        ModelSpec(path="/x", mode="int8")  # type: ignore[arg-type]


def test_hub_id_offline_gives_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kitchen.adapters.hf.model_spec import ModelSpec, load_model
    from kitchen.errors import UsageError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UsageError, match="HF_HUB_OFFLINE"):
        load_model(ModelSpec(hub_id="kitchen-test/definitely-not-cached"))


def test_load_from_path(tmp_path: Path) -> None:
    from kitchen.adapters.hf.model_spec import load_model
    from tests.hf.conftest import tiny_spec

    lm = load_model(tiny_spec("full"))
    lm.model.save_pretrained(tmp_path / "m")
    again = load_model(tiny_spec("lora", config=None, path=str(tmp_path / "m")))
    sd = dict(lm.model.named_parameters())
    for n, p in again.model.get_base_model().named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, sd[n.replace(".base_layer", "")]), n


def test_forward_with_adapter_disabled_is_the_base_model(make_client: Any) -> None:
    """After LoRA steps the adapter-off forward still gives the initial (base) logprobs,
    while the normal forward has moved; the adapter is back on afterwards."""
    client = make_client("lora")
    data = _batch()
    initial = logprobs_of(client.forward(data, "cross_entropy").result(TIMEOUT))
    for _ in range(3):
        _step(client, data, AdamParams(learning_rate=3e-2))
    trained = logprobs_of(client.forward(data, "cross_entropy").result(TIMEOUT))
    base = logprobs_of(client.forward_with_adapter_disabled(data).result(TIMEOUT))
    again = logprobs_of(client.forward(data, "cross_entropy").result(TIMEOUT))
    flat = lambda xs: [x for row in xs for x in row]  # noqa: E731
    assert flat(base) == pytest.approx(flat(initial), abs=1e-5)
    assert max(abs(a - b) for a, b in zip(flat(trained), flat(initial), strict=True)) > 1e-2
    assert flat(again) == pytest.approx(flat(trained), abs=1e-6)


def test_forward_with_adapter_disabled_refuses_full_models(make_client: Any) -> None:
    from kitchen.errors import UsageError

    with pytest.raises(UsageError, match="needs a LoRA/QLoRA model"):
        make_client("full").forward_with_adapter_disabled(_batch())

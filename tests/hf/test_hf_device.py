"""model.device / model.dtype: one resolution (probes injected), placement of a whole step,
bf16 weights with float32 logprobs/losses, and the errors a missing device gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch

from kitchen.adapters.hf.device import Probes, resolve_device, resolve_dtype, resolve_placement
from kitchen.errors import ConfigError
from kitchen.ports import AdamParams
from tests.hf.conftest import ce_datum, sequences, tiny_spec

pytestmark = pytest.mark.hf

TIMEOUT = 120


def machine(
    *, cuda: int = 0, bf16: bool = True, mps: bool = False, local_rank: int | None = None
) -> Probes:
    """A machine with ``cuda`` GPUs (none by default)."""
    return Probes(
        cuda_available=lambda: cuda > 0,
        cuda_device_count=lambda: cuda,
        cuda_bf16_supported=lambda: cuda > 0 and bf16,
        mps_available=lambda: mps,
        local_rank=lambda: local_rank,
    )


# --- resolution ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probes", "requested", "expected"),
    [
        (machine(cuda=2, mps=True), "auto", "cuda:0"),
        (machine(mps=True), "auto", "mps"),
        (machine(), "auto", "cpu"),
        (machine(cuda=2), "cpu", "cpu"),
        (machine(cuda=2), "cuda", "cuda:0"),
        (machine(cuda=2), "cuda:1", "cuda:1"),
        (machine(cuda=4, local_rank=3), "cuda", "cuda:3"),
        (machine(cuda=4, local_rank=2), "auto", "cuda:2"),
        (machine(cuda=4, local_rank=2), "cuda:0", "cuda:0"),  # an explicit index wins
        (machine(mps=True), "mps", "mps"),
        (machine(), None, "cpu"),
    ],
)
def test_device_resolution(probes: Probes, requested: str | None, expected: str) -> None:
    assert resolve_device(requested, probes) == torch.device(expected)


@pytest.mark.parametrize(
    ("probes", "requested", "says"),
    [
        (machine(), "cuda", "no CUDA device"),
        (machine(), "cuda:0", "no CUDA device"),
        (machine(cuda=2), "cuda:2", "2 CUDA device(s) visible"),
        (machine(cuda=2, local_rank=5), "cuda", "2 CUDA device(s) visible"),
        (machine(cuda=1), "mps", "no MPS backend"),
        (machine(), "tpu", "unknown device"),
    ],
)
def test_missing_or_unknown_device_is_an_error_naming_the_field(
    probes: Probes, requested: str, says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_device(requested, probes)
    assert err.value.field == "model.device"
    assert says in str(err.value)
    assert "\n" not in str(err.value)


@settings(max_examples=60, deadline=None)
@given(
    cuda=hs.integers(0, 8),
    bf16=hs.booleans(),
    mps=hs.booleans(),
    rank=hs.none() | hs.integers(0, 7),
    mode=hs.sampled_from(["lora", "qlora", "full"]),
)
def test_auto_always_lands_on_something_the_machine_has(
    cuda: int, bf16: bool, mps: bool, rank: int | None, mode: str
) -> None:
    probes = machine(cuda=cuda, bf16=bf16, mps=mps, local_rank=rank)
    spec = tiny_spec(mode)
    try:
        place = resolve_placement(spec, probes)
    except ConfigError as exc:
        # Only a launcher rank beyond the visible GPUs can make auto fail.
        assert cuda > 0 and rank is not None and rank >= cuda
        assert exc.field == "model.device"
        return
    kind = place.device.type
    assert kind == ("cuda" if cuda else "mps" if mps else "cpu")
    if kind == "cuda":
        assert place.device.index == (rank or 0) < cuda
    # bf16 only where the GPU has it, never for fp32-master full fine-tuning, never on CPU/MPS
    want_bf16 = kind == "cuda" and bf16 and mode != "full"
    assert place.dtype == (torch.bfloat16 if want_bf16 else torch.float32)


def test_explicit_dtype_is_kept_and_unknown_dtype_is_an_error() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("bfloat16", cpu, machine()) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cuda", 0), machine(cuda=1)) == torch.float16
    with pytest.raises(ConfigError) as err:
        resolve_dtype("int8", cpu, machine())
    assert err.value.field == "model.dtype"


def test_spec_rejects_a_malformed_device_at_validation() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown device"):
        tiny_spec(device="gpu0")
    assert tiny_spec(device=" CUDA:1 ").device == "cuda:1"
    assert tiny_spec().device == "auto" and tiny_spec().dtype == "auto"


def test_a_missing_device_fails_when_the_client_is_built() -> None:
    from kitchen.adapters.hf.training import HfTrainingClient

    if torch.cuda.is_available():  # pragma: no cover - this suite runs on CPU machines
        pytest.skip("needs a machine without CUDA")
    with pytest.raises(ConfigError, match=r"model\.device"):
        HfTrainingClient(tiny_spec(device="cuda"))


# --- a real step on the resolved device ---------------------------------------------------


def _watch_step(client: Any) -> tuple[set[torch.device], set[torch.dtype]]:
    """Run one forward_backward + optim_step; the devices of every tensor that touched it
    (parameters, module outputs, gradients, optimizer state) and the dtypes of the module
    outputs."""
    model = client.model
    devices: set[torch.device] = set()
    dtypes: set[torch.dtype] = set()

    def hook(_m: Any, _args: Any, out: Any) -> None:
        outs = out if isinstance(out, tuple) else (out,)
        for t in outs:
            if isinstance(t, torch.Tensor):
                devices.add(t.device)
                dtypes.add(t.dtype)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        data = [ce_datum(s) for s in sequences(3, 9)]
        fb = client.forward_backward(data, "cross_entropy")
        out = fb.result(TIMEOUT)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        devices |= {g.device for g in grads}
        assert grads, "the step produced no gradients"
        client.optim_step(AdamParams(learning_rate=1e-2)).result(TIMEOUT)
    finally:
        for h in handles:
            h.remove()
    devices |= {p.device for p in model.parameters()}
    for state in client._optimizer.state.values():
        devices |= {v.device for v in state.values() if isinstance(v, torch.Tensor)}
    assert all(torch.isfinite(torch.tensor(o["logprobs"].data)).all() for o in out.loss_fn_outputs)
    return devices, dtypes


def test_auto_resolves_to_this_machine_and_every_step_tensor_lives_there(
    make_client: Any,
) -> None:
    client = make_client("lora")
    expected = resolve_device("auto")
    assert client.device == expected
    devices, _ = _watch_step(client)
    assert devices == {expected}


def test_bf16_weights_keep_float32_adapters_logprobs_and_loss(make_client: Any) -> None:
    client = make_client("lora", dtype="bfloat16", device="cpu")
    model = client.model
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16}
    assert trainable == {torch.float32}  # peft keeps the adapter (and so AdamW) in fp32
    devices, dtypes = _watch_step(client)
    assert devices == {torch.device("cpu")}
    assert torch.bfloat16 in dtypes  # the activations really ran in bf16
    fb = client.forward([ce_datum(s) for s in sequences(2, 9)], "cross_entropy").result(TIMEOUT)
    assert fb.loss_fn_outputs[0]["logprobs"].dtype == "float32"
    assert torch.isfinite(torch.tensor(fb.metrics["loss:sum"]))


# --- the CLI ------------------------------------------------------------------------------


def _kitchen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kitchen", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_missing_device_is_one_line_and_exit_2(tmp_path: Path) -> None:
    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("needs a machine without CUDA")
    out = _kitchen(
        "run", "quickstart", "--adapters", "hf", "--no-progress",
        "--run-dir", str(tmp_path / "run"), "--set", "model.device=cuda:0",
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert "model.device" in lines[0] and "Traceback" not in out.stderr


def test_sampler_weights_load_where_model_device_says(make_client: Any) -> None:
    from kitchen.adapters.hf.sampling import HfSamplingClient
    from kitchen.ports import ModelInput, SamplingParams

    client = make_client("lora")
    path = client.save_weights_for_sampler("w").result(TIMEOUT).path
    here = HfSamplingClient.from_weights(path)  # the stored spec's device: auto
    try:
        assert {p.device for p in here.model.parameters()} == {resolve_device("auto")}
    finally:
        here.close()
    if torch.cuda.is_available():  # pragma: no cover
        return
    missing = HfSamplingClient.from_weights(path, device="cuda")
    try:
        fut = missing.sample(ModelInput.from_ints([5, 6, 7]), 1, SamplingParams(max_tokens=2))
        with pytest.raises(ConfigError) as err:
            fut.result(TIMEOUT)
        assert err.value.field == "model.device"
    finally:
        missing.close()

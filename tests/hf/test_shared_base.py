"""Multi-tenant LoRA on one base (``kitchen serve``'s hf backend): sessions interleaved on a
shared base get exactly the losses, weights and checkpoints they get alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch
from safetensors.torch import load_file

from kitchen.ports.types import AdamParams, ModelInput, SamplingParams
from kitchen.server.backends import HfBackend
from tests.hf.conftest import TINY, ce_datum, sequences

pytestmark = pytest.mark.hf
T = 120
SPEC = {"config": dict(TINY), "mode": "lora", "lora": {"rank": 4, "alpha": 8}}
NAME = "tiny"


def _ops(client: Any, seed: int, state: Path) -> list[Any]:
    """A tenant's workload as a list of thunks (each returns a future or a value)."""
    data = [[ce_datum(s) for s in sequences(2, 7, seed=seed * 10 + k)] for k in range(3)]
    adam = AdamParams(learning_rate=0.05, weight_decay=0.01, grad_clip_norm=1.0)
    ops: list[Any] = []
    for k in range(3):
        ops.append(lambda k=k: client.forward_backward(data[k], "cross_entropy"))
        ops.append(lambda: client.optim_step(adam))
    ops.append(lambda: client.save_state("after3"))
    ops.append(lambda: client.forward(data[0], "cross_entropy"))
    ops.append(lambda: client.save_weights_for_sampler("w"))
    return ops


def _collect(results: list[Any]) -> list[Any]:
    out = []
    for r in results:
        v = r.result(T) if hasattr(r, "result") else r
        metrics = getattr(v, "metrics", None)
        out.append(dict(metrics) if metrics is not None else getattr(v, "path", None))
    return out


def _weights(path: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(path) / "weights.safetensors"))


def test_interleaved_tenants_match_running_alone(tmp_path: Path) -> None:
    seeds = [1, 2, 3]
    alone = {}
    for s in seeds:  # each alone: its own server (backend), nobody else on the base
        backend = HfBackend(dict(SPEC), NAME)
        c = backend.create_training(
            base_model=NAME, lora_rank=4, seed=s, state_dir=tmp_path / f"alone{s}"
        )
        alone[s] = _collect([op() for op in _ops(c, s, tmp_path)])
        c.close()

    backend = HfBackend(dict(SPEC), NAME)
    clients = {
        s: backend.create_training(
            base_model=NAME, lora_rank=4, seed=s, state_dir=tmp_path / f"shared{s}"
        )
        for s in seeds
    }
    ops = {s: _ops(c, s, tmp_path) for s, c in clients.items()}
    pending: dict[int, list[Any]] = {s: [] for s in seeds}
    for i in range(len(ops[1])):  # round robin, nothing awaited: calls interleave
        for s in seeds:
            pending[s].append(ops[s][i]())
    together = {s: _collect(pending[s]) for s in seeds}

    models = {id(c.model) for c in clients.values()}
    assert len(models) == 1  # one base model object under every tenant
    for s in seeds:
        got, want = together[s], alone[s]
        for g, w in zip(got, want, strict=True):
            if isinstance(w, dict):
                assert g == pytest.approx(w, rel=1e-6, abs=1e-7), s
        state_g, state_w = _weights(got[6]), _weights(want[6])
        assert set(state_g) == set(state_w) and all("default" in k for k in state_g)
        for k in state_w:
            torch.testing.assert_close(state_g[k], state_w[k], rtol=0, atol=1e-6, msg=k)
    # Different seeds really are different adapters (so isolation was tested, not luck).
    assert alone[1][0] != pytest.approx(alone[2][0])

    # A tenant's checkpoint loads into another tenant (canonical names) and a standalone
    # sampler loads its sampler weights.
    clients[2].load_state(together[1][6]).result(T)
    assert (
        clients[2]
        .forward([ce_datum(sequences(1, 5, seed=99)[0])], "cross_entropy")
        .result(T)
        .metrics["loss:sum"]
        == clients[1]
        .forward([ce_datum(sequences(1, 5, seed=99)[0])], "cross_entropy")
        .result(T)
        .metrics["loss:sum"]
    )
    from kitchen.adapters.hf.sampling import HfSamplingClient

    sampler = HfSamplingClient.from_weights(together[1][8])
    live = clients[1].save_weights_and_get_sampling_client("live")
    prompt = ModelInput.from_ints([3, 4, 5, 6])
    assert sampler.compute_logprobs(prompt).result(T)[1:] == pytest.approx(
        live.compute_logprobs(prompt).result(T)[1:], abs=1e-5
    )
    params = SamplingParams(max_tokens=4, seed=3)
    assert (
        sampler.sample(prompt, 1, params).result(T).sequences[0].tokens
        == live.sample(prompt, 1, params).result(T).sequences[0].tokens
    )
    for c in clients.values():
        c.close()


def test_closing_a_tenant_frees_its_adapter_and_full_mode_keeps_its_own_copy(
    tmp_path: Path,
) -> None:
    backend = HfBackend(dict(SPEC), NAME)
    a = backend.create_training(base_model=NAME, lora_rank=4, seed=1, state_dir=tmp_path / "a")
    b = backend.create_training(base_model=NAME, lora_rank=4, seed=2, state_dir=tmp_path / "b")
    a.forward([ce_datum(sequences(1, 4)[0])], "cross_entropy").result(T)
    b.forward([ce_datum(sequences(1, 4)[0])], "cross_entropy").result(T)
    shared = backend.shared_base(backend._spec(4, 1))
    assert len(shared.worker.submit(lambda: shared.tenants).result(T)) == 2
    a.close()
    assert len(shared.worker.submit(lambda: shared.tenants).result(T)) == 1
    with pytest.raises(RuntimeError, match="closed"):
        a.forward([ce_datum(sequences(1, 4)[0])], "cross_entropy")
    assert b.forward([ce_datum(sequences(1, 4)[0])], "cross_entropy").result(T).metrics
    b.close()

    full = HfBackend({"config": dict(TINY), "mode": "full"}, NAME)
    f1 = full.create_training(base_model=NAME, lora_rank=None, seed=0, state_dir=tmp_path / "f1")
    f2 = full.create_training(base_model=NAME, lora_rank=None, seed=0, state_dir=tmp_path / "f2")
    assert f1.model is not f2.model  # full fine-tuning: every session its own weights
    f1.close()
    f2.close()

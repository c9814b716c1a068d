"""Shared helpers for the hf adapter tests: tiny from-config Llama models (CPU, seconds)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kitchen.ports import Datum, ModelInput, TensorData

# Nothing heavy at import: other suites in this directory must run where peft is absent.

VOCAB = 128

TINY: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "vocab_size": VOCAB,
    "max_position_embeddings": 64,
}

try:
    import torch

    # Keep the suite inside its time budget on small CI machines.
    torch.set_num_threads(min(2, torch.get_num_threads()))
except ImportError:  # pragma: no cover - hf extra not installed
    pass


def tiny_spec(mode: str = "lora", **overrides: Any) -> Any:
    from kitchen.adapters.hf.model_spec import ModelSpec

    data: dict[str, Any] = {"config": dict(TINY), "mode": mode, "seed": 0}
    if mode != "full":
        data["lora"] = {"rank": 4, "alpha": 8}
    data.update(overrides)
    return ModelSpec.model_validate(data)


def sequences(n: int, length: int, seed: int = 0) -> list[list[int]]:
    """``n`` sequences of ``length + 1`` ids (avoiding the small special ids)."""
    rng = random.Random(seed)
    return [[rng.randrange(4, VOCAB) for _ in range(length + 1)] for _ in range(n)]


def ce_datum(seq: Sequence[int], weights: Sequence[float] | None = None) -> Datum:
    n = len(seq) - 1
    w = list(weights) if weights is not None else [1.0] * n
    return Datum(
        ModelInput.from_ints(seq[:-1]),
        {
            "target_tokens": TensorData(tuple(seq[1:]), "int64"),
            "weights": TensorData(tuple(w), "float32"),
        },
    )


def rl_datum(seq: Sequence[int], sampler_logp: Sequence[float], adv: Sequence[float]) -> Datum:
    return Datum(
        ModelInput.from_ints(seq[:-1]),
        {
            "target_tokens": TensorData(tuple(seq[1:]), "int64"),
            "logprobs": TensorData(tuple(sampler_logp), "float32"),
            "advantages": TensorData(tuple(adv), "float32"),
        },
    )


def logprobs_of(out: Any) -> list[list[float]]:
    return [[float(x) for x in o["logprobs"].data] for o in out.loss_fn_outputs]


@pytest.fixture
def make_client(tmp_path: Path) -> Any:
    """Factory for HfTrainingClients over tiny models; closes them at teardown."""
    from kitchen.adapters.hf.training import HfTrainingClient

    made: list[Any] = []

    def make(mode: str = "lora", state_dir: str | Path | None = None, **overrides: Any) -> Any:
        client = HfTrainingClient(
            tiny_spec(mode, **overrides), state_dir=str(state_dir or tmp_path / "state")
        )
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()

"""Shared helpers for the hf adapter tests: tiny from-config Llama models (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kitchen.testing.datums import ce_datum, make_sequences, rl_datum

__all__ = ["TINY", "VOCAB", "ce_datum", "logprobs_of", "rl_datum", "sequences", "tiny_spec"]

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
    """``n`` sequences of ``length + 1`` ids below :data:`VOCAB` (avoiding the specials)."""
    return make_sequences(VOCAB, n, length, seed)


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

"""The shared port contracts, run against the hf adapter with a tiny from-config LoRA model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from kitchen.testing import SamplingClientContract, TrainingClientContract
from tests.hf.conftest import VOCAB, tiny_spec

pytestmark = pytest.mark.hf


class TestHfTrainingContract(TrainingClientContract):
    @pytest.fixture
    def client(self, tmp_path: Path) -> Any:
        from kitchen.adapters.hf.training import HfTrainingClient

        c = HfTrainingClient(tiny_spec("lora"), state_dir=str(tmp_path / "state"))
        yield c
        c.close()

    @pytest.fixture
    def vocab_size(self) -> int:
        return VOCAB


class TestHfSamplingContract(SamplingClientContract):
    @pytest.fixture(scope="class")
    def _model(self) -> Any:
        from kitchen.adapters.hf.model_spec import load_model

        return load_model(tiny_spec("lora")).model

    @pytest.fixture
    def sampling_client(self, _model: Any) -> Any:
        from kitchen.adapters.hf.sampling import HfSamplingClient

        c = HfSamplingClient(_model)
        yield c
        c.close()

    @pytest.fixture
    def vocab_size(self) -> int:
        return VOCAB

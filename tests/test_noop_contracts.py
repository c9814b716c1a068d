"""Every port contract (kitchen.testing) run against the noop adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitchen.adapters.noop import (
    NoopBlobStore,
    NoopDatasetStore,
    NoopHubClient,
    NoopMetricsStore,
    NoopSamplingClient,
    NoopTokenizer,
    NoopTrainingClient,
)
from kitchen.testing import (
    BlobStoreContract,
    DatasetStoreContract,
    HubClientContract,
    MetricsStoreContract,
    SamplingClientContract,
    TokenizerClientContract,
    TrainingClientContract,
)

VOCAB = 512


class TestNoopTrainingInMemory(TrainingClientContract):
    @pytest.fixture
    def client(self, tmp_path: Path) -> NoopTrainingClient:
        return NoopTrainingClient(vocab_size=VOCAB, seed=0)

    @pytest.fixture
    def vocab_size(self) -> int:
        return VOCAB


class TestNoopTrainingOnDisk(TrainingClientContract):
    @pytest.fixture
    def client(self, tmp_path: Path) -> NoopTrainingClient:
        return NoopTrainingClient(vocab_size=VOCAB, seed=3, state_dir=str(tmp_path / "state"))

    @pytest.fixture
    def vocab_size(self) -> int:
        return VOCAB


class TestNoopSampling(SamplingClientContract):
    @pytest.fixture
    def sampling_client(self, tmp_path: Path) -> NoopSamplingClient:
        return NoopSamplingClient(vocab_size=VOCAB, seed=0)

    @pytest.fixture
    def vocab_size(self) -> int:
        return VOCAB


class TestNoopSamplingWithEos(SamplingClientContract):
    """A trained snapshot with an EOS id, so some samples stop early."""

    @pytest.fixture
    def sampling_client(self, tmp_path: Path) -> NoopSamplingClient:
        client = NoopTrainingClient(vocab_size=VOCAB, seed=1)
        sampler = client.save_weights_and_get_sampling_client("s")
        sampler.eos_token_id = 2
        return sampler

    @pytest.fixture
    def vocab_size(self) -> int:
        return VOCAB


class TestNoopDataset(DatasetStoreContract):
    @pytest.fixture
    def dataset_store(self, tmp_path: Path) -> NoopDatasetStore:
        return NoopDatasetStore()

    @pytest.fixture
    def dataset_dest(self, tmp_path: Path) -> str:
        return "memory://contract-rows"


class TestNoopBlob(BlobStoreContract):
    @pytest.fixture
    def blob_store(self, tmp_path: Path) -> NoopBlobStore:
        return NoopBlobStore()


class TestNoopHub(HubClientContract):
    @pytest.fixture
    def hub(self, tmp_path: Path) -> NoopHubClient:
        return NoopHubClient(root=str(tmp_path / "hub"))


class TestNoopMetrics(MetricsStoreContract):
    @pytest.fixture
    def metrics_store(self, tmp_path: Path) -> NoopMetricsStore:
        return NoopMetricsStore()


class TestNoopTokenizer(TokenizerClientContract):
    @pytest.fixture
    def tokenizer(self, tmp_path: Path) -> NoopTokenizer:
        return NoopTokenizer(vocab_size=VOCAB)

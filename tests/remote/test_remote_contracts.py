"""The remote adapter passes the same port contracts as noop and hf (over a real kitchen serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("tinker")

from kitchen.adapters.remote.training import RemoteConfig, RemoteTrainingClient
from kitchen.testing import SamplingClientContract, TrainingClientContract
from tests.remote.server import TOKEN, Server

VOCAB = 512
ARGS = [
    "--backend",
    "noop",
    "--model-name",
    "noop-tiny",
    "--model-spec",
    f'{{"vocab_size": {VOCAB}}}',
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Server(tmp_path_factory.mktemp("serve-contracts") / "data", args=ARGS) as srv:
        yield srv


_opened: list[RemoteTrainingClient] = []


def remote_client(server: Server, seed: int = 0) -> RemoteTrainingClient:
    client = RemoteTrainingClient(
        RemoteConfig(
            base_url=server.url, api_key=TOKEN, base_model="noop-tiny", lora_rank=4, seed=seed
        )
    )
    _opened.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_sessions(server: Server) -> Any:
    """Finish each test's SDK sessions while the server is up (open ones keep heartbeating)."""
    yield
    while _opened:
        _opened.pop().close()


class TestRemoteTraining(TrainingClientContract):
    @pytest.fixture
    def client(self, tmp_path: Path, server: Server) -> RemoteTrainingClient:
        return remote_client(server)

    @pytest.fixture
    def vocab_size(self) -> int:
        return VOCAB


class TestRemoteSampling(SamplingClientContract):
    @pytest.fixture
    def sampling_client(self, tmp_path: Path, server: Server) -> Any:
        return remote_client(server, seed=1).save_weights_and_get_sampling_client("contract")

    @pytest.fixture
    def vocab_size(self) -> int:
        return VOCAB

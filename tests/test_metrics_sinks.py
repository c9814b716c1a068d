"""Each MetricsStore reads back what it wrote; the JSONL store needs no optional deps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kitchen.adapters.metrics import JsonlMetricsStore, MultiplexMetricsStore
from kitchen.errors import AdapterUnavailable
from kitchen.ports import MetricsStore
from kitchen.testing import MetricsStoreContract

ROWS = [({"loss": 2.5, "lr": 0.001}, 1), ({"loss": 1.25, "acc": 0.5}, 2), ({"loss": 0.75}, 3)]


def _log_all(store: MetricsStore) -> None:
    for metrics, step in ROWS:
        store.log(metrics, step)
    store.log_params({"learning_rate": 0.001, "model": "tiny"})
    store.flush()


def test_jsonl_roundtrip(tmp_path: Path) -> None:
    store = JsonlMetricsStore(tmp_path / "m" / "metrics.jsonl")
    assert isinstance(store, MetricsStore)
    _log_all(store)
    assert store.history() == [{"step": s, **m} for m, s in ROWS]
    lines = (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(ROWS)
    assert all("time" in json.loads(line) for line in lines)
    assert store.params() == {"learning_rate": 0.001, "model": "tiny"}
    store.close()


def test_jsonl_skips_torn_tail_and_rejects_reserved(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    store = JsonlMetricsStore(path)
    store.log({"loss": 1.0}, 0)
    with open(path, "a") as fh:
        fh.write('{"step": 1, "lo')  # a crash mid-append
    assert store.history() == [{"step": 0, "loss": 1.0}]
    with pytest.raises(ValueError, match="reserved"):
        store.log({"step": 3.0}, 1)


def test_jsonl_store_imports_no_torch_or_numpy() -> None:
    import subprocess

    code = (
        "import sys, kitchen.adapters.metrics.jsonl, kitchen.adapters.metrics.multiplex;"
        "bad=[m for m in ('torch','numpy','tensorboard','mlflow') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


class _Boom:
    def __init__(self) -> None:
        self.closed = False

    def log(self, metrics: object, step: int) -> None:
        raise RuntimeError("backend down")

    def log_params(self, params: object) -> None:
        pass

    def history(self) -> list[dict[str, object]]:
        return []

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_multiplex_fans_out_and_surfaces_errors(tmp_path: Path) -> None:
    a = JsonlMetricsStore(tmp_path / "a.jsonl")
    b = JsonlMetricsStore(tmp_path / "b.jsonl")
    mux = MultiplexMetricsStore([a, b])
    assert isinstance(mux, MetricsStore)
    _log_all(mux)
    assert a.history() == b.history() == mux.history() == [{"step": s, **m} for m, s in ROWS]
    boom = _Boom()
    c = JsonlMetricsStore(tmp_path / "c.jsonl")
    mux2 = MultiplexMetricsStore([boom, c])
    with pytest.raises(RuntimeError, match="backend down"):
        mux2.log({"loss": 1.0}, 5)
    assert c.history() == [{"step": 5, "loss": 1.0}]  # the healthy store still got it
    mux2.close()
    assert boom.closed


def test_missing_extra_raises_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kitchen.adapters.metrics.mlflow import MlflowMetricsStore
    from kitchen.adapters.metrics.tensorboard import TensorBoardMetricsStore

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes "import tensorboard" fail
    monkeypatch.setitem(sys.modules, "tensorboard.summary", None)
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer", None)
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    with pytest.raises(AdapterUnavailable, match=r"kitchen\[tensorboard\]"):
        TensorBoardMetricsStore(tmp_path / "tb")
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(AdapterUnavailable, match=r"kitchen\[mlflow\]"):
        MlflowMetricsStore(f"file:{tmp_path / 'ml'}")


def test_tensorboard_roundtrip(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kitchen.adapters.metrics import TensorBoardMetricsStore

    store = TensorBoardMetricsStore(tmp_path / "tb")
    assert isinstance(store, MetricsStore)
    _log_all(store)
    store.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["acc", "loss", "lr"]
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 2.5), (2, 1.25), (3, 0.75)]
    assert [(e.step, e.value) for e in acc.Scalars("acc")] == [(2, 0.5)]
    hist = store.history()  # float32 on disk
    assert hist == [pytest.approx({"step": s, **m}, rel=1e-6) for m, s in ROWS]


def test_mlflow_roundtrip(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from kitchen.adapters.metrics import MlflowMetricsStore

    uri = f"file:{tmp_path / 'mlruns'}"
    store = MlflowMetricsStore(uri, experiment="kitchen-test", run_name="r1")
    assert isinstance(store, MetricsStore)
    _log_all(store)
    store.close()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(store.run_id)
    assert run.info.run_name == "r1"
    assert run.info.status == "FINISHED"
    assert run.data.params == {"learning_rate": "0.001", "model": "tiny"}
    hist = client.get_metric_history(store.run_id, "loss")
    assert [(m.step, m.value) for m in hist] == [(1, 2.5), (2, 1.25), (3, 0.75)]
    assert store.history() == [{"step": s, **m} for m, s in ROWS]


# The shared MetricsStore contract, run on every sink here.


class TestJsonlContract(MetricsStoreContract):
    @pytest.fixture
    def metrics_store(self, tmp_path: Path) -> MetricsStore:
        return JsonlMetricsStore(tmp_path / "metrics.jsonl")


class TestMultiplexContract(MetricsStoreContract):
    @pytest.fixture
    def metrics_store(self, tmp_path: Path) -> MetricsStore:
        return MultiplexMetricsStore(
            [JsonlMetricsStore(tmp_path / "a.jsonl"), JsonlMetricsStore(tmp_path / "b.jsonl")]
        )


class TestTensorBoardContract(MetricsStoreContract):
    @pytest.fixture
    def metrics_store(self, tmp_path: Path) -> MetricsStore:
        pytest.importorskip("tensorboard")
        from kitchen.adapters.metrics import TensorBoardMetricsStore

        return TensorBoardMetricsStore(tmp_path / "tb")


class TestMlflowContract(MetricsStoreContract):
    @pytest.fixture
    def metrics_store(self, tmp_path: Path) -> MetricsStore:
        pytest.importorskip("mlflow")
        from kitchen.adapters.metrics import MlflowMetricsStore

        return MlflowMetricsStore(f"file:{tmp_path / 'mlruns'}", experiment="contract")

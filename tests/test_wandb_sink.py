"""The W&B MetricsStore in offline mode, checked by reading back the ``.wandb`` file it wrote."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kitchen.errors import AdapterUnavailable
from kitchen.ports import MetricsStore
from kitchen.testing import MetricsStoreContract

pytest.importorskip("wandb")

from kitchen.adapters.metrics.wandb import (
    WandbMetricsStore,
    iter_wandb_records,
    read_wandb_run,
)

ROWS = [
    ({"loss": 2.5, "lr": 0.001}, 1),
    ({"loss": 1.25, "acc": 0.5}, 2),
    ({"eval_loss": 1.5}, 2),  # a second call at the same step joins that step's row
    ({"loss": 0.75}, 3),
]


@pytest.fixture(autouse=True)
def _hermetic_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


class TestWandbContract(MetricsStoreContract):
    @pytest.fixture
    def metrics_store(self, tmp_path: Path) -> Iterator[MetricsStore]:
        store = WandbMetricsStore("kitchen-contract", "contract", tmp_path / "wb")
        yield store
        store.close()


def test_offline_run_reads_back(tmp_path: Path) -> None:
    store = WandbMetricsStore("kitchen-tests", "sft-tiny", tmp_path / "wb", tags=["t1"])
    assert isinstance(store, MetricsStore)
    for metrics, step in ROWS:
        store.log(metrics, step)
    store.log_params({"learning_rate": 0.001, "model": "tiny", "lora": {"r": 8}})
    store.flush()
    assert store.history() == [{"step": s, **m} for m, s in ROWS]
    store.close()
    store.close()  # idempotent

    assert store.wandb_file.is_file()
    assert store.run_dir.name.startswith("offline-run-")
    run = read_wandb_run(store.wandb_file)
    assert run["run_id"] == store.run_id
    assert run["project"] == "kitchen-tests"
    assert run["name"] == "sft-tiny"
    assert run["history"] == [
        {"step": 1, "loss": 2.5, "lr": 0.001},
        {"step": 2, "loss": 1.25, "acc": 0.5, "eval_loss": 1.5},
        {"step": 3, "loss": 0.75},
    ]
    assert run["config"] == {"learning_rate": 0.001, "model": "tiny", "lora": {"r": 8}}
    assert run["summary"]["loss"] == 0.75
    assert run["summary"]["eval_loss"] == 1.5
    # reading the run directory finds the same file
    assert read_wandb_run(store.run_dir)["history"] == run["history"]


def test_many_steps_span_blocks_and_a_torn_tail_is_tolerated(tmp_path: Path) -> None:
    store = WandbMetricsStore("kitchen-tests", "long", tmp_path / "wb")
    n = 600
    for step in range(n):
        store.log({"loss": 1.0 / (step + 1), "note": "x" * 120}, step)
    store.close()
    run = read_wandb_run(store.wandb_file)
    losses = [r["loss"] for r in run["history"]]
    assert losses == [1.0 / (s + 1) for s in range(n)]
    assert store.wandb_file.stat().st_size > 3 * 32 * 1024  # several LevelDB-log blocks

    torn = tmp_path / "torn.wandb"
    data = store.wandb_file.read_bytes()
    torn.write_bytes(data[: len(data) // 2])  # as if the writer was killed mid-way
    partial = read_wandb_run(torn)["history"]
    assert 0 < len(partial) < n
    assert partial == run["history"][: len(partial)]


def test_two_stores_in_one_process_are_separate_runs(tmp_path: Path) -> None:
    a = WandbMetricsStore("p", "a", tmp_path / "a")
    b = WandbMetricsStore("p", "b", tmp_path / "b")
    a.log({"x": 1.0}, 0)
    b.log({"x": 2.0}, 0)
    a.close()
    b.close()
    assert a.run_id != b.run_id
    assert read_wandb_run(a.wandb_file)["history"] == [{"step": 0, "x": 1.0}]
    assert read_wandb_run(b.wandb_file)["history"] == [{"step": 0, "x": 2.0}]
    kinds = {r.WhichOneof("record_type") for r in iter_wandb_records(a.wandb_file)}
    assert {"run", "history"} <= kinds


def test_bad_mode_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        WandbMetricsStore("p", "r", tmp_path, mode="cloud")
    bogus = tmp_path / "x.wandb"
    bogus.write_bytes(b"not a wandb file at all")
    with pytest.raises(ValueError, match=r"not a \.wandb file"):
        read_wandb_run(bogus)


def test_missing_wandb_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(AdapterUnavailable, match="pip install"):
        WandbMetricsStore("p", "r", tmp_path)

"""Contract tests for :class:`kitchen.ports.MetricsStore`.

Abstract fixture: ``metrics_store`` (a fresh store per test).
"""

from __future__ import annotations

from typing import Any

import pytest

from kitchen.ports import MetricsStore


class MetricsStoreContract:
    @pytest.fixture
    def metrics_store(self, tmp_path: Any) -> MetricsStore:
        raise NotImplementedError("the concrete suite must provide `metrics_store`")

    def test_log_then_history_in_order(self, metrics_store: MetricsStore) -> None:
        metrics_store.log({"loss": 2.5}, step=1)
        metrics_store.log({"loss": 1.25, "acc": 0.5}, step=2)
        metrics_store.log({"val_loss": 3.0}, step=3)
        hist = metrics_store.history()
        assert [r["step"] for r in hist] == [1, 2, 3]
        assert hist[0]["loss"] == 2.5
        assert hist[1]["loss"] == 1.25 and hist[1]["acc"] == 0.5
        assert hist[2]["val_loss"] == 3.0

    def test_history_is_a_copy(self, metrics_store: MetricsStore) -> None:
        metrics_store.log({"loss": 1.0}, step=0)
        metrics_store.history().clear()
        assert len(metrics_store.history()) == 1

    def test_log_params(self, metrics_store: MetricsStore) -> None:
        metrics_store.log_params({"learning_rate": 1e-3, "model": "tiny", "epochs": 2})
        metrics_store.log({"loss": 1.0}, step=1)
        assert [r["step"] for r in metrics_store.history()] == [1]

    def test_flush_and_close_are_idempotent(self, metrics_store: MetricsStore) -> None:
        metrics_store.log({"loss": 1.0}, step=1)
        metrics_store.flush()
        metrics_store.flush()
        metrics_store.close()
        metrics_store.close()

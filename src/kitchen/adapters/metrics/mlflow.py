"""A MetricsStore logging to MLflow through ``MlflowClient`` (no global active-run state).

The default tracking URI is a local file store, ``file:./mlruns``. MLflow 3 refuses the
file store unless ``MLFLOW_ALLOW_FILE_STORE=true``; for ``file:`` URIs this store sets that
variable (only if unset) because a local, server-less store is exactly what kitchen wants
for laptop runs. Use ``sqlite:///path/mlflow.db`` or an ``http(s)://`` server otherwise.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from kitchen.optional import require

#: MLflow's limit on a parameter value's length.
_MAX_PARAM_LEN = 6000


class MlflowMetricsStore:
    """Metrics and params of one MLflow run, created on construction (or resumed by id).

    ``experiment`` is created if missing. ``run_id`` resumes an existing run instead of
    creating one. ``close()`` marks the run FINISHED. ``history()`` reads metric histories
    back from the tracking store and merges them into one record per step.
    """

    def __init__(
        self,
        tracking_uri: str = "file:./mlruns",
        experiment: str = "kitchen",
        run_name: str | None = None,
        *,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if tracking_uri.startswith("file:") or "://" not in tracking_uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        tracking = require("mlflow.tracking", "mlflow")
        self._entities = require("mlflow.entities", "mlflow")
        self.tracking_uri = tracking_uri
        self.client = tracking.MlflowClient(tracking_uri=tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            exp.experiment_id if exp is not None else self.client.create_experiment(experiment)
        )
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id, run_name=run_name, tags=dict(tags or {})
            )
            run_id = run.info.run_id
        else:  # a resumed kitchen run continues its MLflow run
            self.client.update_run(run_id, status="RUNNING")
        self.run_id: str = run_id
        self._lock = threading.Lock()
        self._closed = False

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [
            self._entities.Metric(str(k), float(v), now, int(step)) for k, v in metrics.items()
        ]
        with self._lock:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_params(self, params: Mapping[str, Any]) -> None:
        batch = [self._entities.Param(str(k), str(v)[:_MAX_PARAM_LEN]) for k, v in params.items()]
        with self._lock:
            self.client.log_batch(self.run_id, params=batch)

    def params(self) -> dict[str, str]:
        return dict(self.client.get_run(self.run_id).data.params)

    def history(self) -> list[dict[str, Any]]:
        run = self.client.get_run(self.run_id)
        by_step: dict[int, dict[str, Any]] = {}
        for key in sorted(run.data.metrics):
            for m in self.client.get_metric_history(self.run_id, key):
                by_step.setdefault(int(m.step), {"step": int(m.step)})[key] = float(m.value)
        return [by_step[s] for s in sorted(by_step)]

    def flush(self) -> None:  # MlflowClient writes synchronously
        pass

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self.client.set_terminated(self.run_id)
                self._closed = True

    def __repr__(self) -> str:
        return f"MlflowMetricsStore({self.tracking_uri!r}, run_id={self.run_id!r})"

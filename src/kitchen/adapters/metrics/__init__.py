"""MetricsStore adapters: JSONL (default, core-only), TensorBoard, MLflow and a multiplexer.

Only :mod:`kitchen.adapters.metrics.jsonl` and :mod:`~kitchen.adapters.metrics.multiplex` are
imported eagerly; the TensorBoard and MLflow stores import their backends lazily on first
construction and raise :class:`kitchen.errors.AdapterUnavailable` with the install hint when the
extra is missing.
"""

from __future__ import annotations

from typing import Any

from kitchen.adapters.metrics.jsonl import JsonlMetricsStore
from kitchen.adapters.metrics.multiplex import MultiplexMetricsStore

__all__ = [
    "JsonlMetricsStore",
    "MlflowMetricsStore",
    "MultiplexMetricsStore",
    "TensorBoardMetricsStore",
]


def __getattr__(name: str) -> Any:
    if name == "TensorBoardMetricsStore":
        from kitchen.adapters.metrics.tensorboard import TensorBoardMetricsStore

        return TensorBoardMetricsStore
    if name == "MlflowMetricsStore":
        from kitchen.adapters.metrics.mlflow import MlflowMetricsStore

        return MlflowMetricsStore
    raise AttributeError(name)

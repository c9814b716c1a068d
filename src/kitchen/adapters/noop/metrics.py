"""``NoopMetricsStore``: metrics kept in a list in memory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class NoopMetricsStore:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.params: dict[str, Any] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = False

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.calls.append(("log", {"step": step, "keys": sorted(metrics)}))
        self.records.append({"step": int(step), **dict(metrics)})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.calls.append(("log_params", {"keys": sorted(params)}))
        self.params.update(params)

    def history(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.records]

    def flush(self) -> None:
        self.calls.append(("flush", {}))

    def close(self) -> None:
        self.calls.append(("close", {}))
        self.closed = True

"""Fan one stream of metrics out to several MetricsStores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kitchen.ports.metrics import MetricsStore


class MultiplexMetricsStore:
    """Forwards every call to each store, in order.

    ``history()`` comes from the first store (the primary: put the JSONL store first).
    ``flush``/``close`` reach every store even if one raises; the first error is re-raised
    afterwards so a failing backend never hides data from the others.
    """

    def __init__(self, stores: Sequence[MetricsStore]) -> None:
        if not stores:
            raise ValueError("MultiplexMetricsStore needs at least one store")
        self.stores = list(stores)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self._each("log", metrics, step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._each("log_params", params)

    def history(self) -> list[dict[str, Any]]:
        return self.stores[0].history()

    def flush(self) -> None:
        self._each("flush")

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args: Any) -> None:
        first: BaseException | None = None
        for store in self.stores:
            try:
                getattr(store, method)(*args)
            except Exception as exc:
                if first is None:
                    first = exc
        if first is not None:
            raise first

    def __repr__(self) -> str:
        return f"MultiplexMetricsStore({self.stores!r})"

"""The metrics recorder behind ``ctx.metrics``: numbers to every wired MetricsStore."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from kitchen.ports.metrics import MetricsStore


class MetricsRecorder:
    """Fans ``log`` calls out to stores, keeps a count (for resume) and the last values."""

    def __init__(self, stores: Sequence[MetricsStore] = ()) -> None:
        self.stores = list(stores)
        self.count = 0
        self.last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items()}
        with self._lock:
            for s in self.stores:
                s.log(clean, step)
            self.count += 1
            self.last.update(clean)
        captured = getattr(self._local, "captured", None)
        if captured is not None:
            captured.update(clean)

    @contextmanager
    def capture(self) -> Iterator[dict[str, float]]:
        """Collect the latest value of every metric logged *on this thread* inside the
        block (parallel branches log from their own threads and are not mixed in)."""
        outer = getattr(self._local, "captured", None)
        captured: dict[str, float] = {}
        self._local.captured = captured
        try:
            yield captured
        finally:
            self._local.captured = outer
            if outer is not None:
                outer.update(captured)

    def log_params(self, params: Mapping[str, Any]) -> None:
        for s in self.stores:
            s.log_params(params)

    def flush(self) -> None:
        for s in self.stores:
            s.flush()

    def close(self) -> None:
        for s in self.stores:
            s.close()

"""The default MetricsStore: one JSON line per ``log`` call. Core dependencies only."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kitchen.io import append_jsonl, atomic_write_json, read_json, read_jsonl

#: Keys the store adds to each record next to the metrics.
RESERVED = ("step", "time")


class JsonlMetricsStore:
    """Appends ``{"step": s, **metrics, "time": unix_seconds}`` to ``path`` per ``log`` call.

    ``history()`` reads the file back (a torn last line from a crash is skipped) and returns
    the records without the ``time`` key, as the port specifies. Hyper-parameters from
    ``log_params`` go to ``<path stem>.params.json`` next to the file, written atomically.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.params_path = self.path.with_name(self.path.stem + ".params.json")
        self._lock = threading.Lock()

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for key in metrics:
            if key in RESERVED:
                raise ValueError(
                    f"metric name {key!r} is reserved by JsonlMetricsStore; rename the metric"
                )
        record: dict[str, Any] = {"step": int(step)}
        record.update({k: _scalar(v) for k, v in metrics.items()})
        record["time"] = time.time()
        with self._lock:
            append_jsonl(self.path, record)

    def log_params(self, params: Mapping[str, Any]) -> None:
        with self._lock:
            merged: dict[str, Any] = {}
            if self.params_path.exists():
                merged.update(read_json(self.params_path))
            merged.update(params)
            atomic_write_json(self.params_path, merged)

    def params(self) -> dict[str, Any]:
        return dict(read_json(self.params_path)) if self.params_path.exists() else {}

    def history(self) -> list[dict[str, Any]]:
        out = []
        for rec in read_jsonl(self.path):
            rec = dict(rec)
            rec.pop("time", None)
            out.append(rec)
        return out

    def flush(self) -> None:  # every append is already flushed
        pass

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"JsonlMetricsStore({str(self.path)!r})"


def _scalar(value: Any) -> Any:
    """Plain float for numbers (numpy/torch scalars included, via ``float``), else as is."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value

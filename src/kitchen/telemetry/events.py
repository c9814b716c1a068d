"""Run telemetry: structlog events, OpenTelemetry spans and a JSONL event sink.

Every workflow and stage produces a structlog event and (when an OpenTelemetry SDK is
configured) a span named by its node path. With no SDK installed the API's tracer is a
no-op, so kitchen skips span creation entirely rather than paying for empty spans.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from opentelemetry import trace

from kitchen.telemetry.logging import default_logger


class EventSink(Protocol):
    def emit(self, record: Mapping[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonlEventSink:
    """Appends events to ``events.jsonl``. Buffered; flushed at workflow and checkpoint ends."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    _encode = json.JSONEncoder(default=str, separators=(",", ":")).encode

    def emit(self, record: Mapping[str, Any]) -> None:
        line = self._encode(record) + "\n"
        with self._lock:
            if self._fh is not None:
                self._fh.write(line)

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class MemoryEventSink:
    """Keeps events in a list (tests, embedding)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self.records.append(dict(record))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def otel_enabled() -> bool:
    """True when an OpenTelemetry SDK tracer provider has been installed."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class Telemetry:
    """Where the runner reports. ``stage_events=False`` keeps only workflow-level events."""

    def __init__(
        self,
        run_id: str = "local",
        sinks: list[EventSink] | None = None,
        *,
        stage_events: bool = True,
        tracer_provider: Any = None,
    ) -> None:
        self.run_id = run_id
        self.sinks = list(sinks or [])
        self.stage_events = stage_events
        self.log = default_logger().bind(run_id=run_id)
        if tracer_provider is not None:
            self.tracer = tracer_provider.get_tracer("kitchen")
            self.spans = True
        else:
            self.tracer = trace.get_tracer("kitchen")
            self.spans = otel_enabled()

    def event(self, event: str, /, level: str = "debug", **fields: Any) -> None:
        record = {"event": event, "time": time.time(), "run_id": self.run_id, **fields}
        for sink in self.sinks:
            sink.emit(record)
        getattr(self.log, level)(event, **fields)

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Any]:
        if not self.spans:
            yield None
            return
        with self.tracer.start_as_current_span(name, attributes=_attrs(attributes)) as sp:
            yield sp

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, str | bool | int | float):
            out[f"kitchen.{k}"] = v
        elif v is not None:
            out[f"kitchen.{k}"] = str(v)
    return out

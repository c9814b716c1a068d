"""Telemetry: structlog events, OpenTelemetry spans, JSONL sinks and console progress."""

from kitchen.telemetry.events import (
    EventSink,
    JsonlEventSink,
    MemoryEventSink,
    Telemetry,
    otel_enabled,
)
from kitchen.telemetry.logging import configure_logging

__all__ = [
    "EventSink",
    "JsonlEventSink",
    "MemoryEventSink",
    "Telemetry",
    "configure_logging",
    "otel_enabled",
]

"""A MetricsStore writing TensorBoard event files.

Uses TensorBoard's own event writer (``tensorboard.summary.writer``), so it needs the
``tensorboard`` extra but not torch. Scalars are written as ``simple_value`` summaries with
the metric name as the tag; ``log_params`` writes a ``params`` text summary holding JSON.
``history()`` flushes and reads the scalars back with TensorBoard's ``EventAccumulator``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kitchen.optional import require


class TensorBoardMetricsStore:
    """Scalars to ``<logdir>/events.out.tfevents.*``; read back with ``history()``."""

    def __init__(self, logdir: str | os.PathLike[str], *, flush_secs: int = 10) -> None:
        writer_mod = require("tensorboard.summary.writer.event_file_writer", "tensorboard")
        self._event_pb2 = require("tensorboard.compat.proto.event_pb2", "tensorboard")
        self._summary_pb2 = require("tensorboard.compat.proto.summary_pb2", "tensorboard")
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._writer = writer_mod.EventFileWriter(str(self.logdir), flush_secs=flush_secs)
        self._lock = threading.Lock()
        self._closed = False

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        summary = self._summary_pb2.Summary()
        for key, value in metrics.items():
            summary.value.add(tag=str(key), simple_value=float(value))
        event = self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        with self._lock:
            self._writer.add_event(event)

    def log_params(self, params: Mapping[str, Any]) -> None:
        summary_pb2 = self._summary_pb2
        tensor_pb2 = require("tensorboard.compat.proto.tensor_pb2", "tensorboard")
        shape_pb2 = require("tensorboard.compat.proto.tensor_shape_pb2", "tensorboard")
        text = json.dumps(dict(params), sort_keys=True, default=str)
        tensor = tensor_pb2.TensorProto(
            dtype=7,  # DT_STRING
            string_val=[text.encode("utf-8")],
            tensor_shape=shape_pb2.TensorShapeProto(dim=[shape_pb2.TensorShapeProto.Dim(size=1)]),
        )
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
        )
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="params", metadata=meta, tensor=tensor)]
        )
        with self._lock:
            event = self._event_pb2.Event(wall_time=time.time(), step=0, summary=summary)
            self._writer.add_event(event)

    def history(self) -> list[dict[str, Any]]:
        """Scalars read back from the event files, one record per step, in step order."""
        self.flush()
        ea_mod = require("tensorboard.backend.event_processing.event_accumulator", "tensorboard")
        acc = ea_mod.EventAccumulator(str(self.logdir), size_guidance={ea_mod.SCALARS: 0})
        acc.Reload()
        by_step: dict[int, dict[str, Any]] = {}
        for tag in acc.Tags().get("scalars", []):
            for ev in acc.Scalars(tag):
                by_step.setdefault(int(ev.step), {"step": int(ev.step)})[tag] = float(ev.value)
        return [by_step[s] for s in sorted(by_step)]

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._writer.flush()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._writer.close()
                self._closed = True

    def __repr__(self) -> str:
        return f"TensorBoardMetricsStore({str(self.logdir)!r})"

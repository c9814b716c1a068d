"""A MetricsStore logging to Weights & Biases; offline by default.

``WandbMetricsStore(project, run_name, dir, mode="offline")`` starts one W&B run (through
the run object, never the global ``wandb.log``, with ``reinit="create_new"`` so several
stores can coexist in a process). In offline mode nothing leaves the machine: the run is
written to ``<dir>/wandb/offline-run-*/run-<id>.wandb`` and can be uploaded later with
``wandb sync <that directory>``. ``mode="online"`` logs live (needs ``WANDB_API_KEY``).

``history()`` returns what this store logged, in call order. :func:`read_wandb_run` reads a
``.wandb`` file back (history, config, summary) with W&B's own protobuf schema - the way to
check what was really written. W&B ignores a step lower than one already logged; kitchen
truncates metrics on resume, so a resumed run should resume the same W&B run (pass
``run_id``) and will simply re-log the later steps.

``wandb`` is imported when the store is created; without it,
:class:`~kitchen.errors.AdapterUnavailable` says to ``pip install 'kitchen[wandb]'``.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kitchen.errors import AdapterUnavailable

__all__ = ["WandbMetricsStore", "iter_wandb_records", "read_wandb_run"]

_HINT = "pip install 'kitchen[wandb]' (or: pip install wandb)"


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise AdapterUnavailable(
            f"the W&B metrics sink needs the optional dependency {exc.name or 'wandb'}; "
            f"install it with: {_HINT}"
        ) from None
    return wandb


class WandbMetricsStore:
    """Metrics and params of one W&B run (offline unless ``mode="online"``)."""

    def __init__(
        self,
        project: str = "kitchen",
        run_name: str | None = None,
        dir: str | os.PathLike[str] = ".",
        mode: str = "offline",
        *,
        entity: str | None = None,
        run_id: str | None = None,
        tags: Sequence[str] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"mode must be 'offline', 'online' or 'disabled', not {mode!r}")
        wandb = _import_wandb()
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            silent=True,
            console="off",
            x_disable_stats=True,
            disable_git=True,
            save_code=False,
            x_save_requirements=False,
        )
        self.run = wandb.init(
            project=project,
            entity=entity,
            name=run_name,
            id=run_id,
            dir=str(self.dir),
            mode=mode,
            tags=list(tags) if tags else None,
            config=dict(config) if config else None,
            resume="allow" if run_id else None,
            reinit="create_new",
            settings=settings,
        )
        self.mode = mode
        self.run_id: str = str(self.run.id)
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def run_dir(self) -> Path:
        """The W&B run directory (``.../wandb/offline-run-<time>-<id>``)."""
        return Path(self.run.dir).parent

    @property
    def wandb_file(self) -> Path:
        """The run's transaction log, ``run-<id>.wandb`` (complete after ``close()``)."""
        return self.run_dir / f"run-{self.run_id}.wandb"

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        values = {str(k): _scalar(v) for k, v in metrics.items()}
        with self._lock:
            self.run.log(values, step=int(step))
            self._records.append({"step": int(step), **values})

    def log_params(self, params: Mapping[str, Any]) -> None:
        with self._lock:
            self.run.config.update(dict(params), allow_val_change=True)

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._records]

    def flush(self) -> None:
        """W&B writes from a background service; everything is on disk after ``close()``."""

    def close(self, timeout: float = 60.0) -> None:
        """Finish the run and wait until its ``.wandb`` file holds the exit record.

        ``run.finish()`` can return while W&B's service is still writing the file; waiting
        for the exit record makes "closed" mean "complete on disk" (``timeout`` seconds).
        """
        with self._lock:
            if self._closed:
                return
            self.run.finish()
            self._closed = True
            if self.mode != "disabled":
                _wait_for_exit_record(self.wandb_file, timeout)

    def __repr__(self) -> str:
        return (
            f"WandbMetricsStore(run_id={self.run_id!r}, mode={self.mode!r}, dir={str(self.dir)!r})"
        )


def _wait_for_exit_record(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            if any(rec.WhichOneof("record_type") == "exit" for rec in iter_wandb_records(path)):
                return
        except (OSError, ValueError):
            pass  # not there yet, or mid-write
        if time.monotonic() >= deadline:
            raise TimeoutError(f"W&B did not finish writing {path} within {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


# -- reading a .wandb file back ---------------------------------------------------------------
# The file is W&B's header (":W&B", magic 0xBEE1, version 0) followed by LevelDB-log framing:
# 32 KiB blocks of chunks, each chunk a 7-byte header (masked crc32c, uint16 length, type
# FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4) and its bytes. A record is one protobuf
# ``wandb.proto.wandb_internal_pb2.Record``.
_HEADER = struct.Struct("<4sHB")
_CHUNK = struct.Struct("<IHB")
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _iter_record_bytes(path: str | os.PathLike[str]) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size:
        raise ValueError(f"{path}: too short to be a .wandb file")
    ident, magic, _version = _HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a .wandb file (bad header)")
    pos = _HEADER.size
    pending: bytearray | None = None
    while pos + _CHUNK.size <= len(data):
        room = _BLOCK - (pos % _BLOCK)
        if room < _CHUNK.size:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = _CHUNK.unpack_from(data, pos)
        pos += _CHUNK.size
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += room - _CHUNK.size
            continue
        chunk = data[pos : pos + length]
        if len(chunk) < length:
            break  # a torn tail (the writer was killed): stop at the last whole record
        pos += length
        if kind == _FULL:
            yield bytes(chunk)
        elif kind == _FIRST:
            pending = bytearray(chunk)
        elif kind == _MIDDLE and pending is not None:
            pending += chunk
        elif kind == _LAST and pending is not None:
            pending += chunk
            yield bytes(pending)
            pending = None
        else:
            raise ValueError(f"{path}: unexpected chunk type {kind} at byte {pos - length}")


def iter_wandb_records(path: str | os.PathLike[str]) -> Iterator[Any]:
    """The ``wandb_internal_pb2.Record`` messages of a ``.wandb`` file, in order."""
    _import_wandb()
    from wandb.proto import wandb_internal_pb2

    for raw in _iter_record_bytes(path):
        rec = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        rec.ParseFromString(raw)
        yield rec


def _item_key(item: Any) -> str:
    return str(item.key) if item.key else "/".join(item.nested_key)


def read_wandb_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``.wandb`` file (or a run directory holding one) back.

    Returns ``{"run_id", "project", "name", "history", "config", "summary"}``; ``history``
    holds one ``{"step": s, **metrics}`` per committed W&B step (W&B's own ``_step``,
    ``_runtime`` and ``_timestamp`` are dropped), ``config`` the final config values.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("run-*.wandb")) or sorted(p.glob("*/run-*.wandb"))
        if not files:
            raise FileNotFoundError(f"no run-*.wandb file under {p}")
        p = files[-1]
    out: dict[str, Any] = {
        "run_id": None,
        "project": None,
        "name": None,
        "history": [],
        "config": {},
        "summary": {},
    }
    for rec in iter_wandb_records(p):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run_id"] = rec.run.run_id or out["run_id"]
            out["project"] = rec.run.project or out["project"]
            out["name"] = rec.run.display_name or out["name"]
            _apply_config(out["config"], rec.run.config)
        elif kind == "config":
            _apply_config(out["config"], rec.config)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                row[_item_key(item)] = json.loads(item.value_json)
            step = row.pop("_step", rec.history.step.num)
            for key in [k for k in row if k.startswith("_")]:
                row.pop(key)
            out["history"].append({"step": int(step), **row})
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][_item_key(item)] = json.loads(item.value_json)
            for item in rec.summary.remove:
                out["summary"].pop(_item_key(item), None)
    out["config"].pop("_wandb", None)
    return out


def _apply_config(config: dict[str, Any], record: Any) -> None:
    for item in record.update:
        value = json.loads(item.value_json)
        if isinstance(value, dict) and set(value) == {"value"}:  # W&B wraps config values
            value = value["value"]
        config[_item_key(item)] = value
    for item in record.remove:
        config.pop(_item_key(item), None)

"""The run directory: ``runs/<run_id>/`` with config, events, metrics and checkpoints.

Layout::

    config.json         resolved, validated config (what --resume reads back)
    manifest.json       recipe, workflow fingerprint, adapters, status, timings
    events.jsonl        telemetry events
    metrics.jsonl       one line per metrics.log call
    checkpoints.jsonl   index of complete checkpoints (the commit point of a checkpoint)
    checkpoints/<name>/ run state, RNG state and port state of each checkpoint

A checkpoint counts only once its line is in ``checkpoints.jsonl``; that file is rewritten
atomically after everything the checkpoint needs is on disk, so ``kill -9`` at any moment
leaves the previous checkpoint usable.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
from pathlib import Path
from typing import Any

from kitchen.errors import CheckpointError, UsageError
from kitchen.io import atomic_write_json, read_jsonl, read_record, rewrite_jsonl
from kitchen.runlock import LOCK_NAME, RunLock

#: What a run directory holds that other commands must never replace (``report --out``,
#: ``export --out``): the records themselves and the checkpoints.
RECORDS = frozenset(
    {
        "config.json",
        "manifest.json",
        "events.jsonl",
        "metrics.jsonl",
        "checkpoints.jsonl",
        "checkpoints",
        "cache.jsonl",
        LOCK_NAME,
    }
)

#: Marks a path stored relative to the run directory (see :meth:`RunDir.relative`).
RUN_PREFIX = "run:"


def new_run_id(prefix: str = "run") -> str:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


class RunDir:
    """A run's directory on local disk, optionally mirrored to a BlobStore URL.

    ``location`` is what the user named: the local path, or the remote URL whose working
    copy ``root`` is (see :mod:`kitchen.run_mirror`).
    """

    def __init__(self, root: str | os.PathLike[str], mirror: Any = None) -> None:
        self.root = Path(root)
        self.mirror = mirror
        self.location = mirror.url if mirror is not None else str(self.root)
        self._lock: RunLock | None = None

    def sync(self) -> None:
        """Push the working copy to the remote store (no-op for local runs)."""
        if self.mirror is not None:
            self.mirror.push()

    # -- construction --------------------------------------------------------------
    @classmethod
    def create(
        cls, root: str | os.PathLike[str], mirror: Any = None, *, lock: bool = True
    ) -> RunDir:
        """Create a fresh run directory; refuse one that holds a run, or holds anything
        else. With ``lock`` (the default) the directory is locked first (see
        :mod:`kitchen.runlock`), so of two concurrent creators exactly one wins."""
        rd = cls(root, mirror)
        _make_dir(rd.root, rd.location)
        if lock:
            rd.lock()
        try:
            if rd.holds_run() or (mirror is not None and mirror.remote_has_run()):
                raise UsageError(
                    f"run directory {rd.location} already holds a run; pass --resume "
                    f"{rd.location} to continue it, or choose another --run-dir"
                )
            other = sorted(p.name for p in rd.root.iterdir() if p.name != LOCK_NAME)
            if other:
                shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
                raise UsageError(
                    f"--run-dir {rd.location} is not empty and is not a kitchen run (it holds "
                    f"{shown}); choose a new or empty directory so nothing there is overwritten"
                )
            _make_dir(rd.checkpoints_dir, rd.location)
        except BaseException:
            if rd._lock is not None and rd._lock.held and not rd.holds_run():
                rd._lock.path.unlink(missing_ok=True)  # leave a foreign directory as found
            rd.unlock()
            raise
        return rd

    @classmethod
    def open(
        cls, root: str | os.PathLike[str], mirror: Any = None, *, lock: bool = False
    ) -> RunDir:
        """Open an existing run directory (for resume, report, export); ``lock=True`` for a
        writer (``--resume``)."""
        rd = cls(root, mirror)
        try:
            is_dir = rd.root.is_dir()
            exists = is_dir or rd.root.exists()
        except OSError as exc:  # e.g. a name too long
            raise UsageError(f"run directory {rd.location}: {exc.strerror or exc}") from None
        if not is_dir:
            what = "does not exist" if not exists else "is a file"
            raise UsageError(
                f"{rd.location} is not a kitchen run directory ({what}); pass the directory "
                "a previous `kitchen run` wrote"
            )
        if not rd.config_path.is_file():
            raise UsageError(
                f"{rd.location} is not a kitchen run directory (no config.json); "
                "pass the directory a previous `kitchen run` wrote"
            )
        if lock:
            rd.lock()
        return rd

    # -- lock ----------------------------------------------------------------------
    def lock(self) -> None:
        """Take the run's exclusive lock (exit 2 "run DIR is in use by pid N" if held)."""
        if self._lock is None:
            self._lock = RunLock(self.root, self.location)
        self._lock.acquire()

    def adopt_lock(self, other: RunDir) -> RunDir:
        """Take over the lock ``other`` (a handle on the same directory) holds."""
        self._lock, other._lock = other._lock, None
        return self

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def holds_run(self) -> bool:
        return self.manifest_path.exists() or self.config_path.exists()

    # -- paths ---------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def checkpoints_index(self) -> Path:
        return self.root / "checkpoints.jsonl"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    # -- config & manifest ---------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        return read_record(self.config_path, "run's config")

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {}
        return read_record(self.manifest_path, "run's manifest")

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = self.read_manifest()
        manifest.update(fields)
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    # -- checkpoints ---------------------------------------------------------------
    def checkpoints(self) -> list[dict[str, Any]]:
        return read_jsonl(self.checkpoints_index)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        records = self.checkpoints()
        return records[-1] if records else None

    def add_checkpoint(self, record: dict[str, Any]) -> None:
        """Commit a checkpoint by (atomically) adding its line to the index (and, for a
        remote run, uploading everything with the index last)."""
        rewrite_jsonl(self.checkpoints_index, [*self.checkpoints(), record])
        self.sync()

    def relative(self, path: str) -> str:
        """``run:<relative path>`` when ``path`` is a file inside the run directory, so
        checkpoint records stay valid when the run is resumed from another working copy;
        any other path (a URL, an adapter's opaque name) is returned unchanged."""
        if "://" in path:
            return path
        p = Path(path)
        if not p.is_absolute():
            if not p.exists():
                return path  # an adapter's opaque name, not a file
            p = p.absolute()  # relative to this cwd: a resume from another cwd must work
        try:
            return RUN_PREFIX + p.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path

    def resolve(self, path: str) -> str:
        """Inverse of :meth:`relative`."""
        if path.startswith(RUN_PREFIX):
            return str(self.root / path[len(RUN_PREFIX) :])
        return path

    def checkpoint_path(self, name: str) -> Path:
        if "/" in name or name in ("", ".", ".."):
            raise CheckpointError(f"invalid checkpoint name {name!r}")
        return self.checkpoints_dir / name

    # -- metrics -------------------------------------------------------------------
    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def truncate_metrics(self, count: int) -> None:
        """Keep the first ``count`` metric records (drop those logged after a checkpoint)."""
        records = self.metrics()
        if len(records) > count:
            rewrite_jsonl(self.metrics_path, records[:count])


def _make_dir(path: Path, location: str) -> None:
    """``mkdir -p`` with the reasons it fails (read-only, name too long, a file in the
    way) turned into one-line usage errors."""
    try:
        if path.exists() and not path.is_dir():
            raise UsageError(f"--run-dir {location}: {path} is a file, not a directory")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create run directory {location}: {exc.strerror or exc}"
            f" ({exc.filename or path}); choose a writable --run-dir with a shorter name"
        ) from None


def refuse_run_records(out: str | os.PathLike[str], option: str = "--out") -> None:
    """Refuse an output path that is a run directory or one of its records (its config,
    manifest, metrics, events, checkpoints), so no command overwrites a run."""
    target = Path(out).expanduser().absolute()
    for parent in (target, *target.parents):
        if (parent / "config.json").is_file() and (parent / "manifest.json").is_file():
            rel = target.relative_to(parent)
            if not rel.parts or rel.parts[0] in RECORDS:
                what = f"is the run directory {parent}"
                if rel.parts:
                    what = f"is {rel.parts[0]} of the run {parent}"
                raise UsageError(
                    f"{option} {out} {what}; writing there would replace the run's records. "
                    "Choose a path outside the run (or a new file inside it)"
                )
            return

"""Run directories on any BlobStore URL (``--run-dir s3://bucket/runs/x``).

Adapters write checkpoints to local files, and appends (events, metrics) do not exist on
object stores, so a remote run keeps a local working copy and mirrors it to the store at
commit points: when the run starts, after every checkpoint, and when it ends. The upload
order keeps the remote copy consistent at every moment: every other changed file first,
``checkpoints.jsonl`` (the commit point of a checkpoint) last. A crash at any point leaves
the remote index naming only checkpoints whose files are fully uploaded. ``--resume URL``
downloads the run into a fresh working copy and continues from there.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from kitchen.errors import UsageError

INDEX = "checkpoints.jsonl"


def is_remote(location: str | os.PathLike[str] | None) -> bool:
    """True for URLs other than plain paths and ``file://``."""
    if location is None:
        return False
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def working_copy_for(url: str) -> Path:
    """Where the local working copy of a remote run lives (``$KITCHEN_RUN_CACHE`` or
    ``~/.cache/kitchen/runs``), one folder per URL."""
    base = Path(os.environ.get("KITCHEN_RUN_CACHE") or Path.home() / ".cache" / "kitchen" / "runs")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return base / digest


def clear_working_copy(local: Path) -> None:
    """Empty ``local`` (creating it if needed) but keep its run lock file: the lock must
    stay on the same inode while its holder clears and refills the copy."""
    import shutil

    from kitchen.runlock import LOCK_NAME

    local.mkdir(parents=True, exist_ok=True)
    for child in local.iterdir():
        if child.name == LOCK_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RunMirror:
    """Mirrors a local run directory to a BlobStore (fsspec URL); uploads only changes."""

    def __init__(self, url: str, local_root: Path, store: Any = None) -> None:
        if store is None:
            from kitchen.optional import require

            blob = require("kitchen.adapters.blob", "s3" if url.startswith("s3://") else "hf")
            store = blob.FsspecBlobStore(url)
        self.url = url
        self.local = Path(local_root)
        self.store = store
        self._uploaded: dict[str, str] = {}

    def remote_has_run(self) -> bool:
        return bool(self.store.exists("manifest.json") or self.store.exists("config.json"))

    def pull(self) -> int:
        """Download the remote run into the (emptied) working copy; returns files fetched."""
        if not self.store.exists("config.json"):
            raise UsageError(
                f"{self.url} is not a kitchen run directory (no config.json); pass the "
                "--run-dir URL a previous `kitchen run` wrote"
            )
        clear_working_copy(self.local)
        n = 0
        for key in self.store.list(""):
            dest = self.local / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(key, dest)
            self._uploaded[key] = _sha256(dest)
            n += 1
        return n

    def push(self) -> int:
        """Upload changed files, the checkpoint index last; returns files uploaded."""
        changed: list[tuple[str, Path, str]] = []
        index: tuple[str, Path, str] | None = None
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            rel = path.relative_to(self.local).as_posix()
            if any(part.startswith(".") for part in rel.split("/")):
                continue  # temp files of in-flight atomic writes
            digest = _sha256(path)
            if self._uploaded.get(rel) == digest:
                continue
            if rel == INDEX:
                index = (rel, path, digest)
            else:
                changed.append((rel, path, digest))
        if index is not None:
            changed.append(index)
        for rel, path, digest in changed:
            self.store.put_file(rel, path)
            self._uploaded[rel] = digest
        return len(changed)

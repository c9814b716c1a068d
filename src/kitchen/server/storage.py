"""Checkpoint storage for ``kitchen serve``: ``tinker://`` paths under the data directory.

Layout (``ROOT`` is ``--data-dir``)::

    ROOT/models/<run_id>/state/                 the backend adapter's own state_dir
    ROOT/checkpoints/<run_id>/run.json           base model, LoRA rank, seed of the run
    ROOT/checkpoints/<run_id>/<kind>/<name>.json the commit record of one checkpoint

A checkpoint exists (its ``tinker://<run_id>/<kind>/<name>`` path resolves) only once its
commit record is on disk. The record is written with :func:`kitchen.io.atomic_write_json`
*after* the backend finished writing the files it points at, so a crash or ``kill -9``
at any moment leaves either the previous checkpoint or the new one, never a torn one.

Names are checked against a strict pattern and every resolved path is checked to lie
inside ``ROOT``, so a checkpoint name cannot escape the data directory.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kitchen.io import atomic_write_json, read_json

#: URL segment → checkpoint type, as in the SDK's ``ParsedCheckpointTinkerPath``.
KINDS: dict[str, str] = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$")


class CheckpointRefused(ValueError):
    """A checkpoint name or path was refused (bad characters, traversal, missing, exists)."""


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise CheckpointRefused(
            f"checkpoint name {name!r} refused: use 1-128 characters from [A-Za-z0-9._-], "
            "starting with a letter or digit (no '/', no '..')"
        )
    return name


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_RE.match(run_id) or ".." in run_id:
        raise CheckpointRefused(f"training run id {run_id!r} refused")
    return run_id


@dataclass(frozen=True)
class ParsedPath:
    run_id: str
    kind: str  # "weights" | "sampler_weights"
    name: str

    @property
    def tinker_path(self) -> str:
        return f"tinker://{self.run_id}/{self.kind}/{self.name}"


def parse_tinker_path(path: str) -> ParsedPath:
    if not isinstance(path, str) or not path.startswith("tinker://"):
        raise CheckpointRefused(
            f"checkpoint path {path!r} refused: expected tinker://RUN/KIND/NAME"
        )
    parts = path[len("tinker://") :].split("/")
    if len(parts) != 3 or parts[1] not in KINDS:
        raise CheckpointRefused(
            f"checkpoint path {path!r} refused: expected tinker://RUN/weights/NAME or "
            "tinker://RUN/sampler_weights/NAME"
        )
    return ParsedPath(check_run_id(parts[0]), parts[1], check_name(parts[2]))


@dataclass(frozen=True)
class Checkpoint:
    tinker_path: str
    kind: str
    name: str
    #: Absolute path the backend adapter returned; feed it back to the adapter.
    adapter_path: str
    created_at: float
    user_metadata: dict[str, str]
    run: dict[str, Any]


class CheckpointStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        (self.root / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.root / "models").mkdir(parents=True, exist_ok=True)

    # -- paths -----------------------------------------------------------------------

    def _inside(self, p: Path) -> Path:
        rp = p.resolve()
        if rp != self.root and not rp.is_relative_to(self.root):
            raise CheckpointRefused(f"path {p} escapes the data directory")
        return rp

    def _run_dir(self, run_id: str) -> Path:
        return self._inside(self.root / "checkpoints" / check_run_id(run_id))

    def _record(self, parsed: ParsedPath) -> Path:
        return self._inside(self._run_dir(parsed.run_id) / parsed.kind / f"{parsed.name}.json")

    def state_dir(self, run_id: str) -> Path:
        d = self._inside(self.root / "models" / check_run_id(run_id) / "state")
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- runs ------------------------------------------------------------------------

    def write_run(self, run_id: str, info: dict[str, Any]) -> None:
        atomic_write_json(self._run_dir(run_id) / "run.json", info)

    def read_run(self, run_id: str) -> dict[str, Any]:
        p = self._run_dir(run_id) / "run.json"
        if not p.exists():
            raise CheckpointRefused(f"unknown training run {run_id!r}")
        data = read_json(p)
        return dict(data) if isinstance(data, dict) else {}

    # -- checkpoints -----------------------------------------------------------------

    def exists(self, run_id: str, kind: str, name: str) -> bool:
        return self._record(ParsedPath(run_id, kind, check_name(name))).exists()

    def commit(
        self,
        run_id: str,
        kind: str,
        name: str,
        adapter_path: str,
        *,
        user_metadata: dict[str, str] | None = None,
        overwrite: bool = True,
    ) -> str:
        """Record a finished checkpoint; returns its ``tinker://`` path."""
        parsed = ParsedPath(check_run_id(run_id), kind, check_name(name))
        record = self._record(parsed)
        previous: dict[str, Any] | None = None
        if record.exists():
            if not overwrite:
                raise CheckpointRefused(
                    f"checkpoint {parsed.tinker_path} already exists; pass overwrite=True"
                )
            prev = read_json(record)
            previous = prev if isinstance(prev, dict) else None
        produced = Path(adapter_path)
        if not produced.is_absolute():
            produced = self.state_dir(run_id) / produced
        produced = self._inside(produced)
        atomic_write_json(
            record,
            {
                "tinker_path": parsed.tinker_path,
                "kind": kind,
                "name": name,
                "adapter_path": str(produced.relative_to(self.root)),
                "created_at": time.time(),
                "user_metadata": dict(user_metadata or {}),
            },
        )
        if previous is not None:
            self._delete_payload(previous, keep=produced)
        return parsed.tinker_path

    def _delete_payload(self, record: dict[str, Any], keep: Path) -> None:
        rel = record.get("adapter_path")
        if not isinstance(rel, str):
            return
        try:
            old = self._inside(self.root / rel)
        except CheckpointRefused:
            return
        if old == keep or not old.exists():
            return
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)

    def resolve(self, tinker_path: str) -> Checkpoint:
        parsed = parse_tinker_path(tinker_path)
        record = self._record(parsed)
        if not record.exists():
            raise CheckpointRefused(f"checkpoint {tinker_path} not found")
        data = read_json(record)
        adapter_path = self._inside(self.root / str(data["adapter_path"]))
        return Checkpoint(
            tinker_path=parsed.tinker_path,
            kind=parsed.kind,
            name=parsed.name,
            adapter_path=str(adapter_path),
            created_at=float(data.get("created_at", 0.0)),
            user_metadata=dict(data.get("user_metadata") or {}),
            run=self.read_run(parsed.run_id),
        )

    def delete(self, tinker_path: str) -> None:
        """Remove a checkpoint: its commit record first (atomic: the path stops resolving at
        once), then the files it pointed to."""
        parsed = parse_tinker_path(tinker_path)
        record = self._record(parsed)
        if not record.exists():
            raise CheckpointRefused(f"checkpoint {tinker_path} not found")
        data = read_json(record)
        record.unlink()
        if isinstance(data, dict):
            self._delete_payload(data, keep=self.root)

    def runs(self) -> list[str]:
        """Every training run id with a ``run.json``, oldest first."""
        found = []
        for d in (self.root / "checkpoints").iterdir():
            rec = d / "run.json"
            if rec.is_file():
                found.append((rec.stat().st_mtime, d.name))
        return [name for _, name in sorted(found)]

    def list(self, run_id: str) -> list[Checkpoint]:
        out: list[Checkpoint] = []
        run_dir = self._run_dir(run_id)
        for kind in KINDS:
            d = run_dir / kind
            if not d.is_dir():
                continue
            for rec in sorted(d.glob("*.json")):
                try:
                    out.append(self.resolve(f"tinker://{run_id}/{kind}/{rec.stem}"))
                except (CheckpointRefused, OSError, KeyError, ValueError):
                    continue
        return out

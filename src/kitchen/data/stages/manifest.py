"""Helpers every data stage shares: hashing, versioned manifests, JSONL records, sharding.

Every stage writes a *versioned* JSON manifest::

    {"kind": "kitchen.data.<stage>", "schema_version": 1, "kitchen_version": "...", ...}

:func:`read_manifest` checks ``kind`` and ``schema_version`` and names the file and the
field that is wrong, with the fix, so a stage handed the wrong file fails clearly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from kitchen.context import Context
from kitchen.errors import DataError, UsageError
from kitchen.io import atomic_write_json, rewrite_jsonl

SCHEMA_VERSION = 1

Record = dict[str, Any]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def json_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    return sha256_text(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(path: str | Path, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``body`` as a versioned manifest of ``kind`` atomically; returns what was written."""
    from kitchen import __version__

    doc = {
        "kind": f"kitchen.data.{kind}",
        "schema_version": SCHEMA_VERSION,
        "kitchen_version": __version__,
        **body,
    }
    atomic_write_json(path, doc)
    return doc


def read_manifest(path: str | Path, kind: str) -> dict[str, Any]:
    """Read a manifest written by :func:`write_manifest`, checking its kind and version."""
    p = Path(path)
    want = f"kitchen.data.{kind}"
    if not p.is_file():
        raise DataError(str(p), None, None, f"no {kind} manifest here; run the {kind} stage first")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            str(p), None, None, f"not a readable JSON manifest ({exc}); delete it and re-run"
        ) from exc
    if not isinstance(doc, dict):
        raise DataError(str(p), None, None, "a manifest must be a JSON object")
    if doc.get("kind") != want:
        raise DataError(
            str(p),
            None,
            "kind",
            f"expected {want!r}, found {doc.get('kind')!r}; pass the {kind} stage's manifest",
        )
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise DataError(
            str(p),
            None,
            "schema_version",
            f"version {doc.get('schema_version')!r} is not supported (this kitchen reads "
            f"{SCHEMA_VERSION}); re-run the {kind} stage to regenerate it",
        )
    return doc


def write_records(path: str | Path, records: Iterable[Mapping[str, Any]]) -> str:
    """Atomically write JSONL records; returns the file's sha256."""
    rewrite_jsonl(path, records)
    return file_sha256(path)


def read_records(path: str | Path, *, required: Iterable[str] = ("id",)) -> list[Record]:
    """Read JSONL records; a bad line raises :class:`DataError` naming file, row and field."""
    p = Path(path)
    if not p.is_file():
        raise DataError(str(p), None, None, "file not found; run the stage that writes it first")
    out: list[Record] = []
    need = tuple(required)
    with open(p, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    str(p), i, None, f"invalid JSON ({exc.msg}); fix or delete the line"
                ) from exc
            if not isinstance(rec, dict):
                raise DataError(str(p), i, None, "each line must be a JSON object")
            for name in need:
                if name not in rec:
                    raise DataError(str(p), i, name, "missing required field")
            out.append(rec)
    return out


def listed_records(manifest: str | Path, kind: str, entry: str) -> list[Record]:
    """The records of the file a ``kind`` manifest lists under ``entry``, checksum-verified."""
    m = Path(manifest)
    doc = read_manifest(m, kind)
    info = doc.get(entry)
    if not isinstance(info, dict) or "file" not in info:
        raise DataError(str(m), None, entry, f"the {kind} manifest lists no {entry} file")
    path = m.parent / str(info["file"])
    if not path.is_file():
        raise DataError(str(path), None, None, f"listed by {m.name} but missing; re-run {kind}")
    if info.get("sha256") and file_sha256(path) != info["sha256"]:
        raise DataError(
            str(path),
            None,
            None,
            f"changed since {m.name} was written (sha256 differs); re-run the {kind} stage "
            "instead of editing its output",
        )
    return read_records(path)


def state_path(ctx: Context, key: str, what: str) -> Path:
    """The path stored in ``ctx.state[key]``, or a UsageError saying how to provide it."""
    value = ctx.state.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(
            f"ctx.state[{key!r}] is not set: it should hold the path of the {what}; run the "
            f"stage that produces it first or set it in the initial state"
        )
    return Path(value)


def _module_source(name: str) -> str:
    mod = sys.modules.get(name)
    try:
        return inspect.getsource(mod) if mod is not None else name
    except (OSError, TypeError):
        return name


def code_version(cls: type) -> str:
    """Hash of the stage's module and of this helper module (the cache's code version).

    The runner's own code hash covers only the stage class body; a stage's behaviour also
    lives in its module's helper functions, so data stages put this into
    ``CachePolicy.version``.
    """
    src = _module_source(cls.__module__) + _module_source(__name__)
    return sha256_text(src)[:16]


@dataclasses.dataclass(kw_only=True)
class DataStage:
    """Base of the data stages: a callable stage object with a cache policy.

    ``stage(Normalise(out_dir=...))`` is a cacheable node: its ``outputs`` and ``cache``
    come from the object. ``input``/``output`` are the ``ctx.state`` keys it reads and
    writes (paths of manifests or JSONL files). Set ``cacheable=False`` to always run.
    """

    out_dir: str
    cacheable: bool = True
    #: Bump to invalidate cached results by hand.
    version: str = ""

    kind: ClassVar[str] = "data"

    # the state keys; subclasses declare ``input``/``output`` fields with defaults
    def cache_inputs(self) -> tuple[str, ...]:
        return (getattr(self, "input"),)  # noqa: B009 - declared by subclasses

    @property
    def name(self) -> str:
        return self.kind

    @property
    def outputs(self) -> tuple[str, ...]:
        return (getattr(self, "output"),)  # noqa: B009

    @property
    def cache(self) -> Any:
        if not self.cacheable:
            return None
        from kitchen.runner.cache import CachePolicy

        return CachePolicy(
            inputs=self.cache_inputs(), version=f"{code_version(type(self))}{self.version}"
        )

    def __call__(self, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def dir(self) -> Path:
        d = Path(self.out_dir)
        d.mkdir(parents=True, exist_ok=True)
        return d


@dataclasses.dataclass(kw_only=True)
class ShardedStage(DataStage):
    """A data stage that can run on one shard of its input (``shard`` of ``num_shards``).

    With ``num_shards > 1`` the stage processes items ``i`` with ``i % num_shards == shard``
    and writes into ``out_dir/shard-<k>-of-<n>/``; :func:`kitchen.data.stages.shards.sharded`
    runs every shard as a branch of a ``parallel`` block and merges them with
    :meth:`merge`.
    """

    shard: int = 0
    num_shards: int = 1

    def __post_init__(self) -> None:
        if self.num_shards < 1 or not 0 <= self.shard < self.num_shards:
            raise UsageError(
                f"{type(self).__name__}: shard={self.shard} num_shards={self.num_shards}; "
                "need 0 <= shard < num_shards"
            )

    def select(self, items: list[Any]) -> list[Any]:
        if self.num_shards == 1:
            return items
        return [x for i, x in enumerate(items) if i % self.num_shards == self.shard]

    def shard_dir(self) -> Path:
        d = Path(self.out_dir)
        if self.num_shards > 1:
            d = d / f"shard-{self.shard}-of-{self.num_shards}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def merge(self, ctx: Context, manifests: list[Path]) -> dict[str, Any]:
        """Combine shard manifests into one in ``out_dir``; returns ``{output: path}``."""
        raise NotImplementedError

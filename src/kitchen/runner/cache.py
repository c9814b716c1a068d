"""Content-hash stage caching.

A stage built with ``stage(fn, cache=CachePolicy(inputs=[...]), outputs=[...])`` is skipped
when a stored result has the same key. The key is the sha256 of this JSON document::

    {
      "stage":   "<module:qualname of the stage callable>",
      "path":    "<static node path, e.g. data/dedup>",
      "params":  {stage params and, for dataclass/pydantic stage objects, their fields},
      "inputs":  {"<state key>": "<content hash of its value>", ...},
      "code":    "<sha256 of the stage module's source>:<policy.version>"
    }

The content hash of an input value is the sha256 of its canonical JSON, except that a
string naming an existing file hashes the file's bytes and one naming a directory hashes
every file in it (relative path + bytes). So a stage whose input file changed runs again,
and stages downstream run again only if that stage's *outputs* changed content.

A stored result holds the stage's declared ``outputs`` (state values). When an output is a
path to a file or directory, its content hash is stored too and re-checked on a hit: if the
file is gone or changed, the hit becomes a miss and the stage runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitchen.dsl.nodes import Stage
from kitchen.dsl.refs import ref_of
from kitchen.errors import StageError
from kitchen.io import atomic_write_json, read_json


@dataclass(frozen=True)
class CachePolicy:
    """Marks a stage cacheable. ``inputs`` are the ``ctx.state`` keys it reads."""

    inputs: tuple[str, ...] = ()
    #: Bump to invalidate results when behaviour changes without a source change
    #: (e.g. a dependency upgrade).
    version: str = ""


@dataclass
class CacheDecision:
    path: str
    key: str
    hit: bool
    components: dict[str, Any] = field(default_factory=dict)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: Any) -> str:
    """Hash of a state value; files and directories named by a string hash their content."""
    if isinstance(value, str) and value and len(value) < 4096:
        p = Path(value)
        try:
            if p.is_file():
                return "file:" + _file_hash(p)
            if p.is_dir():
                return "dir:" + _dir_hash(p)
        except OSError:
            pass
    return "json:" + _sha(json.dumps(value, sort_keys=True, default=repr).encode())


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dir_hash(path: Path) -> str:
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            fp = Path(root) / name
            h.update(str(fp.relative_to(path)).encode() + b"\0" + _file_hash(fp).encode())
    return h.hexdigest()


def code_version(fn: Any) -> str:
    """Hash of the source of the module defining the stage (function or class).

    The whole module, not just the stage body: a stage's behaviour also lives in the
    helpers it calls. Conservative by design: any edit to that module re-runs its stages.
    """
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn)
    module = inspect.getmodule(target)
    try:
        source = inspect.getsource(module) if module is not None else inspect.getsource(target)
    except (OSError, TypeError):
        source = ref_of(fn)
    return _sha(source.encode())[:16]


def _stage_params(node: Stage) -> dict[str, Any]:
    from kitchen.dsl.render import _instance_init, _jsonable

    params = {k: _jsonable(v) for k, v in node.params.items()}
    init = _instance_init(node.fn)
    if init:
        params["__init__"] = init
    return params


class StageCache:
    """Stores stage results under ``root/<key>.json``; shared across runs by default."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.decisions: list[CacheDecision] = []
        self._lock = threading.Lock()

    def key(
        self, node: Stage, static_path: str, state: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        policy = node.cache
        assert policy is not None
        inputs: dict[str, str] = {}
        for name in policy.inputs:
            if name not in state:
                raise StageError(
                    static_path,
                    KeyError(
                        f"cache input {name!r} is not in ctx.state; run the stage that "
                        "produces it first or fix CachePolicy.inputs"
                    ),
                )
            inputs[name] = content_hash(state[name])
        components = {
            "stage": ref_of(node.fn),
            "path": static_path,
            "params": _stage_params(node),
            "inputs": inputs,
            "code": f"{code_version(node.fn)}:{policy.version}",
        }
        key = _sha(json.dumps(components, sort_keys=True).encode())
        return key, components

    def lookup(self, key: str) -> dict[str, Any] | None:
        path = self.root / f"{key}.json"
        if not path.exists():
            return None
        try:
            record = read_json(path)
        except (OSError, ValueError):
            return None  # a damaged entry is a miss, never an error
        for name, expected in record.get("output_hashes", {}).items():
            if content_hash(record["outputs"].get(name)) != expected:
                return None
        outputs = record.get("outputs")
        return outputs if isinstance(outputs, dict) else None

    def store(self, key: str, components: dict[str, Any], outputs: dict[str, Any]) -> None:
        hashes = {
            k: content_hash(v)
            for k, v in outputs.items()
            if isinstance(v, str) and (Path(v).is_file() or Path(v).is_dir())
        }
        atomic_write_json(
            self.root / f"{key}.json",
            {"key": key, "components": components, "outputs": outputs, "output_hashes": hashes},
        )

    def record(self, decision: CacheDecision) -> None:
        with self._lock:
            self.decisions.append(decision)

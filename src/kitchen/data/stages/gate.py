"""Quality gate: pluggable checks on every sample; failures go to ``rejected.jsonl``.

A check is any object with a ``name`` and ``__call__(sample) -> list[str]`` returning the
reasons the sample fails (empty list = pass); ``applies(sample)`` (optional) limits it to
some samples. Built-in:

- :class:`NonEmpty` - required fields are non-empty strings
- :class:`Length` - a field's length is within bounds
- :class:`CommandCheck` - runs an external command (a linter, ``python -m py_compile``)
  on each sample's code written to a temporary file; a non-zero exit rejects the sample
  with the command's first line of output as the reason
- :class:`FnCheck` - wraps a plain function

Outputs (in ``out_dir``): ``accepted.jsonl``, ``rejected.jsonl`` (``id``, ``reasons``,
``sample``), ``report.json`` (pass rates per check and error counts) and the ``gate.json``
manifest. With ``num_shards > 1`` each shard checks a slice; run the shards as branches of a
``parallel`` block with :func:`kitchen.data.stages.shards.sharded` - checker processes then
run concurrently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kitchen.context import Context
from kitchen.data.stages.manifest import (
    ShardedStage,
    listed_records,
    read_manifest,
    read_records,
    state_path,
    write_manifest,
    write_records,
)
from kitchen.errors import UsageError
from kitchen.io import atomic_write_json


@runtime_checkable
class Check(Protocol):
    name: str

    def __call__(self, sample: dict[str, Any]) -> list[str]: ...


def _applies(check: Any, sample: dict[str, Any]) -> bool:
    fn = getattr(check, "applies", None)
    return bool(fn(sample)) if callable(fn) else True


@dataclasses.dataclass(frozen=True)
class NonEmpty:
    fields: tuple[str, ...] = ("instruction", "response")
    name: str = "non_empty"

    def __call__(self, sample: dict[str, Any]) -> list[str]:
        out = []
        for f in self.fields:
            v = sample.get(f)
            if not isinstance(v, str) or not v.strip():
                out.append(f"field '{f}' is empty or missing")
        return out


@dataclasses.dataclass(frozen=True)
class Length:
    field: str = "response"
    min_chars: int = 1
    max_chars: int = 20_000
    name: str = "length"

    def __call__(self, sample: dict[str, Any]) -> list[str]:
        n = len(str(sample.get(self.field) or ""))
        if n < self.min_chars:
            return [f"field '{self.field}' has {n} chars < {self.min_chars}"]
        if n > self.max_chars:
            return [f"field '{self.field}' has {n} chars > {self.max_chars}"]
        return []


@dataclasses.dataclass(frozen=True)
class CommandCheck:
    """Run ``command`` (``{file}`` is replaced by the temp file) on a sample's code.

    ``langs`` selects samples by their ``lang`` field; ``field`` is the text checked.
    """

    name: str
    command: tuple[str, ...]
    langs: tuple[str, ...] = ("python",)
    field: str = "response"
    suffix: str = ".py"
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.command or not any("{file}" in c for c in self.command):
            raise UsageError(
                f"check {self.name!r}: command {list(self.command)} must contain a '{{file}}' "
                "argument where the sample's file goes"
            )

    def applies(self, sample: dict[str, Any]) -> bool:
        return not self.langs or sample.get("lang") in self.langs

    def __call__(self, sample: dict[str, Any]) -> list[str]:
        with tempfile.TemporaryDirectory(prefix="kitchen-gate-") as tmp:
            path = os.path.join(tmp, "sample" + self.suffix)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(str(sample.get(self.field) or ""))
            argv = [c.replace("{file}", path) for c in self.command]
            try:
                r = subprocess.run(
                    argv, capture_output=True, text=True, timeout=self.timeout, cwd=tmp, check=False
                )
            except FileNotFoundError:
                raise UsageError(
                    f"check {self.name!r}: command {argv[0]!r} is not installed; install it "
                    "or remove the check from the gate"
                ) from None
            except subprocess.TimeoutExpired:
                return [f"{self.name}: timed out after {self.timeout}s"]
        if r.returncode == 0:
            return []
        output = (r.stdout + "\n" + r.stderr).replace(path, "<sample>").replace(tmp, "<tmp>")
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        # prefer the line naming the error (e.g. "SyntaxError: ...") over a traceback header
        pick = next(
            (ln for ln in reversed(lines) if re.search(r"error|warning|:\d+:", ln, re.I)), None
        )
        reason = pick or (lines[-1] if lines else f"exit status {r.returncode}")
        return [f"{self.name}: {reason[:300]}"]


@dataclasses.dataclass(frozen=True)
class FnCheck:
    """A check from a function ``fn(sample) -> list[str] | str | bool`` (True/''/[] = pass)."""

    name: str
    fn: Callable[[dict[str, Any]], Any] = dataclasses.field(compare=False)

    def __call__(self, sample: dict[str, Any]) -> list[str]:
        r = self.fn(sample)
        if r is True or r is None or r == "" or r == []:
            return []
        if r is False:
            return [f"{self.name}: failed"]
        return [r] if isinstance(r, str) else [str(x) for x in r]

    def __repr__(self) -> str:
        try:
            src = inspect.getsource(self.fn)
        except (OSError, TypeError):
            src = getattr(self.fn, "__qualname__", "")
        return f"FnCheck({self.name!r}, code={hashlib.sha256(src.encode()).hexdigest()[:12]})"


def _error_key(reason: str) -> str:
    """Group reasons for the report: drop line/column numbers and quoted names."""
    key = re.sub(r"line \d+|:\d+(:\d+)?", "", reason)
    key = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", key)
    return key.strip()[:120]


DEFAULT_CHECKS: tuple[Any, ...] = (NonEmpty(), Length())


@dataclasses.dataclass(kw_only=True)
class Gate(ShardedStage):
    """Run ``checks`` over the samples of the generate manifest at ``ctx.state[input]``."""

    input: str = "samples"
    output: str = "gated"
    checks: tuple[Any, ...] = DEFAULT_CHECKS

    kind = "gate"

    def __call__(self, ctx: Context) -> dict[str, Any]:
        src = state_path(ctx, self.input, "generate manifest")
        samples = self.select(listed_records(src, "generate", "samples"))
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        per_check = {c.name: {"checked": 0, "failed": 0} for c in self.checks}
        errors: dict[str, int] = {}
        for s in samples:
            reasons: list[dict[str, str]] = []
            for c in self.checks:
                if not _applies(c, s):
                    continue
                per_check[c.name]["checked"] += 1
                found = c(s)
                if found:
                    per_check[c.name]["failed"] += 1
                    for r in found:
                        reasons.append({"check": c.name, "reason": r})
                        k = f"{c.name}: {_error_key(r.removeprefix(c.name + ': '))}"
                        errors[k] = errors.get(k, 0) + 1
            if reasons:
                rejected.append({"id": s.get("id"), "reasons": reasons, "sample": s})
            else:
                accepted.append(s)
        return self._write(self.shard_dir(), accepted, rejected, per_check, errors)

    def _write(
        self,
        out: Path,
        accepted: list[dict[str, Any]],
        rejected: list[dict[str, Any]],
        per_check: dict[str, dict[str, int]],
        errors: dict[str, int],
    ) -> dict[str, Any]:
        accepted.sort(key=lambda s: str(s.get("id")))
        rejected.sort(key=lambda s: str(s.get("id")))
        digest = write_records(out / "accepted.jsonl", accepted)
        write_records(out / "rejected.jsonl", rejected)
        total = len(accepted) + len(rejected)
        report = {
            "total": total,
            "passed": len(accepted),
            "rejected": len(rejected),
            "pass_rate": round(len(accepted) / total, 4) if total else None,
            "checks": {
                name: {
                    **v,
                    "pass_rate": round(1 - v["failed"] / v["checked"], 4) if v["checked"] else None,
                }
                for name, v in per_check.items()
            },
            "errors": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
        }
        atomic_write_json(out / "report.json", report)
        path = out / "gate.json"
        write_manifest(
            path,
            "gate",
            {
                "accepted": {"file": "accepted.jsonl", "sha256": digest, "count": len(accepted)},
                "checks": [repr(c) for c in self.checks],
                "report": report,
                "shard": [self.shard, self.num_shards],
            },
        )
        return {self.output: str(path)}

    def merge(self, ctx: Context, manifests: list[Path]) -> dict[str, Any]:
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        per_check: dict[str, dict[str, int]] = {}
        errors: dict[str, int] = {}
        for m in manifests:
            doc = read_manifest(m, "gate")
            accepted += read_records(m.parent / "accepted.jsonl")
            rejected += read_records(m.parent / "rejected.jsonl")
            for name, v in doc["report"]["checks"].items():
                agg = per_check.setdefault(name, {"checked": 0, "failed": 0})
                agg["checked"] += v["checked"]
                agg["failed"] += v["failed"]
            for k, n in doc["report"]["errors"].items():
                errors[k] = errors.get(k, 0) + n
        whole = dataclasses.replace(self, shard=0, num_shards=1)
        return whole._write(whole.dir(), accepted, rejected, per_check, errors)


def accepted_samples(manifest: str | Path) -> list[dict[str, Any]]:
    """The samples a gate manifest accepted (checksum-verified)."""
    return listed_records(manifest, "gate", "accepted")

"""Discovering sources: the sources manifest (YAML or JSON).

.. code-block:: yaml

    version: 1
    sources:
      - name: framework-code          # unique; files land under sources/<name>/...
        kind: git                     # a git repository at a pinned commit
        url: ../repos/framework.git   # path or URL git understands (relative = to this file)
        commit: 3f2a...               # required: 7-40 hex digits
        include: ["**/*.py"]          # optional globs on paths inside the source
      - name: guide
        kind: url                     # http(s):// (urllib) or any fsspec URL (file://, memory://)
        url: http://127.0.0.1:8000/guide.md
        sha256: 9b1c...               # optional pin: a different body is rejected as corrupt
      - name: docs
        kind: url
        url: file:///data/docs        # an fsspec directory: every file under it

Errors name the manifest file and the bad field, e.g.
``sources.yaml field 'sources.1.commit': required for git sources (pin a commit)``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kitchen.errors import DataError

_HEX = re.compile(r"^[0-9a-fA-F]{7,64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class SourceSpec(BaseModel):
    """One source of the manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["git", "url"]
    url: str
    commit: str | None = None
    sha256: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("use letters, digits, '_', '-' or '.' (it becomes a blob key)")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("commit")
    @classmethod
    def _commit(cls, v: str | None) -> str | None:
        if v is not None and not _HEX.match(v):
            raise ValueError("must be a commit id (7-40 hex digits), not a branch or tag name")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None:
            v = v.removeprefix("sha256:").lower()
            if not re.fullmatch(r"[0-9a-f]{64}", v):
                raise ValueError("must be 64 hex digits (optionally prefixed 'sha256:')")
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> SourceSpec:
        if self.kind == "git" and self.commit is None:
            raise ValueError("field 'commit' is required for git sources (pin a commit id)")
        if self.kind == "url" and self.commit is not None:
            raise ValueError("'commit' only applies to git sources; remove it")
        return self

    def wants(self, path: str) -> bool:
        """Whether a file at ``path`` (relative, '/'-separated) passes include/exclude."""
        if self.include and not any(_match(path, g) for g in self.include):
            return False
        return not any(_match(path, g) for g in self.exclude)

    def fingerprint(self) -> str:
        from kitchen.data.stages.manifest import json_hash

        return json_hash(self.model_dump(mode="json"))


def _match(path: str, pattern: str) -> bool:
    if fnmatch.fnmatch(path, pattern):
        return True
    # "**/*.py" should also match top-level "a.py"
    return pattern.startswith("**/") and fnmatch.fnmatch(path, pattern[3:])


class SourcesManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    sources: list[SourceSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SourcesManifest:
        seen: set[str] = set()
        for s in self.sources:
            if s.name in seen:
                raise ValueError(f"duplicate source name {s.name!r}; names must be unique")
            seen.add(s.name)
        return self


def _resolve_url(url: str, base: Path) -> str:
    """Relative local paths are taken relative to the manifest's directory."""
    if "://" in url or url.startswith(("/", "~")):
        return url
    if re.match(r"^[\w.-]+@[\w.-]+:", url):  # scp-like git URL
        return url
    return str((base / url).resolve())


def load_sources(path: str | Path) -> list[SourceSpec]:
    """Read and validate a sources manifest; errors name the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise DataError(str(p), None, None, "sources manifest not found; check the path")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".json":
            raw: Any = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as exc:
        raise DataError(str(p), None, None, f"cannot parse ({exc}); fix the syntax") from exc
    if not isinstance(raw, dict):
        raise DataError(str(p), None, None, "expected a mapping with 'version' and 'sources'")
    try:
        manifest = SourcesManifest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or None
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise DataError(str(p), None, loc, msg) from None
    base = p.parent.resolve()
    return [s.model_copy(update={"url": _resolve_url(s.url, base)}) for s in manifest.sources]

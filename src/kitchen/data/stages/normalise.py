"""Normalise: decode fetched files and apply normalisation rules, user-extensible.

A rule is ``fn(text, path) -> text``. Built-in rules (by name):

=====================  =============================================================
``bom``                drop a leading UTF-8 byte-order mark
``line_endings``       CRLF and lone CR become LF
``trailing_whitespace`` strip spaces and tabs at line ends
``tabs``               tabs at the start of a line become 4 spaces (python only)
``licence_header``     drop a leading comment block that mentions a licence/copyright
``blank_lines``        collapse runs of 3+ blank lines to 2; drop leading blank lines
``final_newline``      exactly one trailing newline
=====================  =============================================================

Add your own with :func:`register_rule` (by name) or pass a :class:`Rule` object::

    register_rule("no_todo", lambda text, path: text.replace("TODO", ""))
    Normalise(out_dir="work/normalised", rules=(*DEFAULT_RULES, "no_todo"))

The rules run in order, repeated until nothing changes (at most 8 passes), so the result is
a fixed point: normalising normalised text changes nothing (idempotence is tested).
Files that are not UTF-8 text, or that are empty after normalisation, go to
``rejected.jsonl`` with the reason.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kitchen.context import Context
from kitchen.data.stages.manifest import (
    ShardedStage,
    read_manifest,
    read_records,
    sha256_bytes,
    sha256_text,
    state_path,
    write_manifest,
    write_records,
)
from kitchen.errors import UsageError

RuleFn = Callable[[str, str], str]

LANGS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".md": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".cfg": "ini",
    ".ini": "ini",
}


def language_of(path: str) -> str:
    return LANGS.get(Path(path).suffix.lower(), "text")


@dataclasses.dataclass(frozen=True)
class Rule:
    """A named rule applied to files matching ``paths`` globs (all files when empty).

    Its ``repr`` carries a hash of the function's source, so editing a rule changes the
    cache key of the stage that uses it.
    """

    name: str
    fn: RuleFn = dataclasses.field(compare=False)
    paths: tuple[str, ...] = ()

    def applies(self, path: str) -> bool:
        return not self.paths or any(fnmatch.fnmatch(path, g) for g in self.paths)

    def __call__(self, text: str, path: str) -> str:
        return self.fn(text, path) if self.applies(path) else text

    def __repr__(self) -> str:
        try:
            src = inspect.getsource(self.fn)
        except (OSError, TypeError):
            src = getattr(self.fn, "__qualname__", repr(type(self.fn)))
        code = hashlib.sha256(src.encode()).hexdigest()[:12]
        return f"Rule({self.name!r}, paths={list(self.paths)}, code={code})"


# -- built-in rules ----------------------------------------------------------------------
def _bom(text: str, path: str) -> str:
    return text.removeprefix("\ufeff")


def _line_endings(text: str, path: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)


def _trailing_whitespace(text: str, path: str) -> str:
    return _TRAILING.sub("", text)


def _tabs(text: str, path: str) -> str:
    if language_of(path) != "python":
        return text
    return re.sub(r"^\t+", lambda m: "    " * len(m.group(0)), text, flags=re.MULTILINE)


_LICENCE_WORDS = re.compile(r"licen[cs]e|copyright|spdx-license-identifier|\(c\)", re.I)


def _strip_one_header(text: str) -> str:
    stripped = text.lstrip("\n")
    lines = stripped.split("\n")
    # keep a shebang / encoding line in front of the header
    keep: list[str] = []
    while lines and (lines[0].startswith("#!") or re.match(r"#.*coding[:=]", lines[0])):
        keep.append(lines.pop(0))
    rest = "\n".join(lines)
    block = ""
    m = re.match(r"((?:[ \t]*(?:#|//)[^\n]*(?:\n|$))+)", rest)
    if m:
        block = m.group(1)
    else:
        m = re.match(r"\s*(/\*.*?\*/|<!--.*?-->)[ \t]*\n?", rest, re.S)
        if m:
            block = m.group(0)
    if block and _LICENCE_WORDS.search(block):
        rest = rest[len(block) :].lstrip("\n")
        return "\n".join([*keep, rest]) if keep else rest
    return text


def _licence_header(text: str, path: str) -> str:
    for _ in range(8):
        new = _strip_one_header(text)
        if new == text:
            break
        text = new
    return text


def _blank_lines(text: str, path: str) -> str:
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.lstrip("\n")


def _final_newline(text: str, path: str) -> str:
    text = text.rstrip("\n")
    return text + "\n" if text else ""


_REGISTRY: dict[str, Rule] = {}


def register_rule(
    name: str, fn: RuleFn, *, paths: tuple[str, ...] = (), replace: bool = False
) -> Rule:
    """Register a rule under ``name`` so configs can refer to it by name."""
    if name in _REGISTRY and not replace:
        raise UsageError(f"a normalise rule named {name!r} exists; pass replace=True")
    rule = Rule(name, fn, tuple(paths))
    _REGISTRY[name] = rule
    return rule


for _name, _fn in (
    ("bom", _bom),
    ("line_endings", _line_endings),
    ("trailing_whitespace", _trailing_whitespace),
    ("tabs", _tabs),
    ("licence_header", _licence_header),
    ("blank_lines", _blank_lines),
    ("final_newline", _final_newline),
):
    register_rule(_name, _fn)

DEFAULT_RULES: tuple[str, ...] = (
    "bom",
    "line_endings",
    "trailing_whitespace",
    "tabs",
    "licence_header",
    "blank_lines",
    "final_newline",
)


def resolve_rules(rules: tuple[str | Rule, ...]) -> list[Rule]:
    out = []
    for r in rules:
        if isinstance(r, Rule):
            out.append(r)
        elif isinstance(r, str) and r in _REGISTRY:
            out.append(_REGISTRY[r])
        else:
            raise UsageError(
                f"unknown normalise rule {r!r}; known: {', '.join(sorted(_REGISTRY))} "
                "(register yours with kitchen.data.stages.normalise.register_rule)"
            )
    return out


def normalise_text(
    text: str, path: str, rules: list[Rule], max_passes: int = 8
) -> tuple[str, list[str]]:
    """Apply ``rules`` until a fixed point; returns the text and the names of rules that fired."""
    fired: list[str] = []
    for _ in range(max_passes):
        before = text
        for rule in rules:
            new = rule(text, path)
            if new != text and rule.name not in fired:
                fired.append(rule.name)
            text = new
        if text == before:
            break
    return text, fired


@dataclasses.dataclass(kw_only=True)
class Normalise(ShardedStage):
    """Decode and normalise every file of the fetch manifest at ``ctx.state[input]``.

    Writes ``documents.jsonl`` (``id, source, path, lang, text, sha256, raw_sha256,
    rules``), ``rejected.jsonl`` and the ``normalise.json`` manifest.
    """

    input: str = "fetched"
    output: str = "normalised"
    rules: tuple[str | Rule, ...] = DEFAULT_RULES
    include: tuple[str, ...] = ()

    kind = "normalise"

    def __call__(self, ctx: Context) -> dict[str, Any]:
        rules = resolve_rules(self.rules)
        fetch = read_manifest(state_path(ctx, self.input, "fetch manifest"), "fetch")
        blob = ctx.ports.require("blob")
        items = [
            (s["name"], f)
            for s in fetch["sources"]
            for f in s.get("files", [])
            if not self.include or any(fnmatch.fnmatch(f["path"], g) for g in self.include)
        ]
        docs: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        fired_counts: dict[str, int] = {}
        for source, f in self.select(items):
            doc_id = f"{source}/{f['path']}"
            try:
                data = blob.get(f["key"])
            except KeyError:
                raise UsageError(
                    f"blob {f['key']!r} named by {self.input} is missing from the BlobStore; "
                    "use a persistent BlobStore or clear the stage cache so fetch runs again"
                ) from None
            if sha256_bytes(data) != f["sha256"]:
                rejected.append(
                    {"id": doc_id, "reason": "blob checksum differs from fetch manifest"}
                )
                continue
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                rejected.append(
                    {
                        "id": doc_id,
                        "reason": f"not UTF-8 text (byte {exc.start}); binary files are skipped",
                    }
                )
                continue
            if "\x00" in raw:
                rejected.append({"id": doc_id, "reason": "contains NUL bytes (binary file)"})
                continue
            text, fired = normalise_text(raw, f["path"], rules)
            for name in fired:
                fired_counts[name] = fired_counts.get(name, 0) + 1
            if not text.strip():
                rejected.append({"id": doc_id, "reason": "empty after normalisation"})
                continue
            docs.append(
                {
                    "id": doc_id,
                    "source": source,
                    "path": f["path"],
                    "lang": language_of(f["path"]),
                    "text": text,
                    "sha256": sha256_text(text),
                    "raw_sha256": f["sha256"],
                    "rules": fired,
                }
            )
        return self._write(self.shard_dir(), docs, rejected, fired_counts, len(items))

    def _write(
        self,
        out: Path,
        docs: list[dict[str, Any]],
        rejected: list[dict[str, Any]],
        fired: dict[str, int],
        total: int,
    ) -> dict[str, Any]:
        docs.sort(key=lambda d: d["id"])
        rejected.sort(key=lambda d: d["id"])
        digest = write_records(out / "documents.jsonl", docs)
        write_records(out / "rejected.jsonl", rejected)
        path = out / "normalise.json"
        write_manifest(
            path,
            "normalise",
            {
                "documents": {"file": "documents.jsonl", "sha256": digest, "count": len(docs)},
                "rules": [repr(r) for r in resolve_rules(self.rules)],
                "stats": {
                    "input_files": total,
                    "documents": len(docs),
                    "rejected": len(rejected),
                    "changed_by_rule": dict(sorted(fired.items())),
                    "chars": sum(len(d["text"]) for d in docs),
                },
                "shard": [self.shard, self.num_shards],
            },
        )
        return {self.output: str(path)}

    def merge(self, ctx: Context, manifests: list[Path]) -> dict[str, Any]:
        docs: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        fired: dict[str, int] = {}
        total = 0
        for m in manifests:
            doc = read_manifest(m, "normalise")
            docs += read_records(m.parent / "documents.jsonl")
            rejected += read_records(m.parent / "rejected.jsonl")
            total += doc["stats"]["input_files"] if doc["shard"][0] == 0 else 0
            for k, v in doc["stats"]["changed_by_rule"].items():
                fired[k] = fired.get(k, 0) + v
        whole = dataclasses.replace(self, shard=0, num_shards=1)
        return whole._write(whole.dir(), docs, rejected, fired, total)


def documents_path(manifest: str | Path) -> Path:
    """The documents file next to a normalise (or dedup) manifest."""
    return Path(manifest).parent / "documents.jsonl"

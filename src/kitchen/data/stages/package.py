"""Split and package: a seeded train/valid/test split as a versioned dataset.

Layout under ``out_dir`` (the dataset root)::

    index.json              every version: number, content hash, counts, created_at
    v1/train.jsonl valid.jsonl test.jsonl
    v1/manifest.json        hashes of the split files, sources, stats, split parameters
    v2/...

Each row is ``{"id", "messages": [user, assistant], "instruction", "response", "lang",
"provenance"}`` - ready for the supervised workflow (``messages`` format).

**Split.** Samples are ordered by ``sha256(f"{seed}:{id}")`` and cut at the
``fractions``: deterministic for a seed, a partition of the input, and mostly stable as
data is added (a sample keeps its rank, so few samples move between splits).

**Schema.** ``required`` fields must be non-empty strings and ``provenance`` must name its
``source_file``, ``transformation`` and ``generator``. A bad row raises
:class:`~kitchen.errors.DataError` naming the file, row and field (or, with
``on_invalid="reject"``, goes to ``v<N>/rejected.jsonl``).

**Versions.** Packaging content identical to an existing version re-uses it; anything else
becomes version ``max + 1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from kitchen.context import Context
from kitchen.data.stages.gate import accepted_samples
from kitchen.data.stages.manifest import (
    SCHEMA_VERSION,
    DataStage,
    json_hash,
    read_manifest,
    state_path,
    write_manifest,
    write_records,
)
from kitchen.errors import DataError, UsageError
from kitchen.io import atomic_write_json, read_json

SPLITS = ("train", "valid", "test")


def split_ids(ids: list[str], fractions: tuple[float, ...], seed: int) -> dict[str, list[str]]:
    """Partition ``ids`` into train/valid/test by seeded hash rank."""
    ranked = sorted(set(ids), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n = len(ranked)
    total = sum(fractions)
    n_valid = round(n * fractions[1] / total)
    n_test = round(n * fractions[2] / total)
    # keep at least one row in a split that asked for some, when there are enough rows
    if n >= 3:
        if fractions[1] > 0:
            n_valid = max(1, n_valid)
        if fractions[2] > 0:
            n_test = max(1, n_test)
    n_train = max(0, n - n_valid - n_test)
    n_valid = min(n_valid, n - n_train)
    return {
        "train": ranked[:n_train],
        "valid": ranked[n_train : n_train + n_valid],
        "test": ranked[n_train + n_valid :],
    }


def schema_errors(row: dict[str, Any], required: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(field, problem)`` for each schema violation of a sample row."""
    out = []
    for f in required:
        v = row.get(f)
        if not isinstance(v, str) or not v.strip():
            out.append((f, "must be a non-empty string"))
    prov = row.get("provenance")
    if not isinstance(prov, dict):
        out.append(("provenance", "must be an object naming the sample's origin"))
    else:
        for f in ("source_file", "transformation", "generator"):
            if not prov.get(f):
                out.append((f"provenance.{f}", "must be set"))
    return out


@dataclasses.dataclass(kw_only=True)
class Package(DataStage):
    """Split the gate's accepted samples into ``out_dir/v<N>/`` with a manifest and index."""

    input: str = "gated"
    output: str = "dataset"
    #: Optional state key of the fetch manifest, to list the sources in the dataset manifest.
    sources_input: str | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    required: tuple[str, ...] = ("instruction", "response")
    system: str | None = None
    on_invalid: Literal["raise", "reject"] = "raise"

    kind = "package"

    def __post_init__(self) -> None:
        if (
            len(self.fractions) != 3
            or any(f < 0 for f in self.fractions)
            or not sum(self.fractions)
        ):
            raise UsageError(
                f"Package.fractions={self.fractions}: give three non-negative train/valid/test "
                "fractions with a positive sum"
            )

    def cache_inputs(self) -> tuple[str, ...]:
        return (self.input,) + ((self.sources_input,) if self.sources_input else ())

    def __call__(self, ctx: Context) -> dict[str, Any]:
        src = state_path(ctx, self.input, "gate manifest")
        samples = accepted_samples(src)
        origin = str(Path(src).parent / "accepted.jsonl")
        rows: dict[str, dict[str, Any]] = {}
        rejected: list[dict[str, Any]] = []
        for i, s in enumerate(samples):
            errs = schema_errors(s, self.required)
            if not errs and s.get("id") in rows:
                errs = [("id", f"duplicate id {s.get('id')!r}")]
            if errs:
                if self.on_invalid == "raise":
                    f, msg = errs[0]
                    raise DataError(
                        origin,
                        i,
                        f,
                        f"{msg}; fix the generator, add a NonEmpty check to the gate, or "
                        "package with on_invalid='reject'",
                    )
                rejected.append(
                    {"row": i, "id": s.get("id"), "errors": [f"{f}: {m}" for f, m in errs]}
                )
                continue
            rows[str(s["id"])] = self._row(s)
        if not rows:
            raise DataError(origin, None, None, "no valid samples to package; see the gate report")
        parts = split_ids(list(rows), self.fractions, self.seed)
        sources = self._sources(ctx, rows)
        root = self.dir()
        split_rows = {k: [rows[i] for i in sorted(v)] for k, v in parts.items()}
        file_hashes = {k: json_hash(v) for k, v in split_rows.items()}
        params = {"fractions": list(self.fractions), "seed": self.seed, "system": self.system}
        content = json_hash({"files": file_hashes, "params": params})
        index = self._index(root)
        for v in index["versions"]:
            if v["content_sha256"] == content and (root / v["path"] / "manifest.json").is_file():
                return {self.output: str(root / v["path"])}
        existing = [int(p.name[1:]) for p in root.glob("v*") if p.name[1:].isdigit()]
        number = max([0, *existing, *(v["version"] for v in index["versions"])]) + 1
        vdir = root / f"v{number}"
        files = {}
        for k in SPLITS:
            digest = write_records(vdir / f"{k}.jsonl", split_rows[k])
            files[k] = {"file": f"{k}.jsonl", "sha256": digest, "rows": len(split_rows[k])}
        if rejected:
            write_records(vdir / "rejected.jsonl", rejected)
        write_manifest(
            vdir / "manifest.json",
            "dataset",
            {
                "version": number,
                "content_sha256": content,
                "split": params,
                "files": files,
                "sources": sources,
                "stats": self._stats(rows, split_rows, len(rejected)),
                "upstream": {"gate_manifest": str(src)},
            },
        )
        index["versions"].append(
            {
                "version": number,
                "path": f"v{number}",
                "content_sha256": content,
                "rows": {k: files[k]["rows"] for k in SPLITS},
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        index["latest"] = number
        atomic_write_json(root / "index.json", index)
        return {self.output: str(vdir)}

    def _row(self, s: dict[str, Any]) -> dict[str, Any]:
        messages = [
            {"role": "user", "content": s["instruction"]},
            {"role": "assistant", "content": s["response"]},
        ]
        if self.system:
            messages.insert(0, {"role": "system", "content": self.system})
        return {
            "id": str(s["id"]),
            "messages": messages,
            "instruction": s["instruction"],
            "response": s["response"],
            "lang": s.get("lang", "text"),
            "provenance": s["provenance"],
        }

    def _index(self, root: Path) -> dict[str, Any]:
        path = root / "index.json"
        if not path.is_file():
            return {
                "kind": "kitchen.data.dataset_index",
                "schema_version": SCHEMA_VERSION,
                "versions": [],
            }
        try:
            index = read_json(path)
        except ValueError as exc:
            raise DataError(
                str(path), None, None, f"not valid JSON ({exc}); restore or delete it"
            ) from None
        if not isinstance(index, dict) or not isinstance(index.get("versions"), list):
            raise DataError(
                str(path), None, "versions", "must be a list; restore or delete the index"
            )
        return index

    def _sources(self, ctx: Context, rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        used = Counter(r["provenance"].get("source") for r in rows.values())
        if self.sources_input:
            fpath = state_path(ctx, self.sources_input, "fetch manifest")
            fetch = read_manifest(fpath, "fetch")
            try:
                origins = read_json(fpath.parent / "fetch-state.json")["sources"]
            except (OSError, ValueError, KeyError):
                origins = {}
            return [
                {k: s.get(k) for k in ("name", "kind", "commit", "content") if s.get(k) is not None}
                | {"url": origins.get(s["name"], {}).get("url")}
                | {"files": len(s.get("files", [])), "samples": used.get(s["name"], 0)}
                for s in fetch["sources"]
                if "error" not in s
            ]
        return [
            {"name": k, "samples": n} for k, n in sorted(used.items(), key=lambda kv: str(kv[0]))
        ]

    def _stats(
        self,
        rows: dict[str, dict[str, Any]],
        split_rows: dict[str, list[dict[str, Any]]],
        rejected: int,
    ) -> dict[str, Any]:
        vals = list(rows.values())

        def mean(field: str) -> float:
            return round(sum(len(r[field]) for r in vals) / len(vals), 1) if vals else 0.0

        return {
            "rows": len(vals),
            "rejected": rejected,
            "by_split": {k: len(v) for k, v in split_rows.items()},
            "by_transformation": dict(
                sorted(Counter(r["provenance"]["transformation"] for r in vals).items())
            ),
            "by_lang": dict(sorted(Counter(r["lang"] for r in vals).items())),
            "by_source_file": len({r["provenance"]["source_file"] for r in vals}),
            "mean_chars": {"instruction": mean("instruction"), "response": mean("response")},
        }


def load_split(dataset_dir: str | Path, split: str) -> list[dict[str, Any]]:
    from kitchen.data.stages.manifest import read_records

    d = Path(dataset_dir)
    read_manifest(d / "manifest.json", "dataset")
    return read_records(d / f"{split}.jsonl", required=("id", "messages"))

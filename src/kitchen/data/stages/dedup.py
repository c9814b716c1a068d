"""Deduplicate: exact (sha256 of the normalised text) then near-duplicate (MinHash LSH).

Documents are visited in a deterministic order (fewest path segments, then shortest id,
then id: canonical copies usually sit higher in the tree) and the first of each group is
kept. Near duplicates use :mod:`datasketch`: each document's shingles (``k``
consecutive whitespace-separated tokens) feed a ``MinHash`` with ``num_perm``
permutations; an LSH index with ``threshold`` proposes candidates among the documents
kept so far, and a document is dropped when its estimated Jaccard similarity with the most
similar candidate is at least ``threshold``.

``dedup.json`` records the counts before and after and maps every dropped document to the
kept document it duplicates::

    {"stats": {"before": 12, "after": 9, "exact_dropped": 2, "near_dropped": 1},
     "dropped": [{"id": "code/b.py", "duplicate_of": "code/a.py", "kind": "exact",
                  "similarity": 1.0}, ...]}
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any, Literal

from kitchen.context import Context
from kitchen.data.stages.manifest import (
    DataStage,
    listed_records,
    state_path,
    write_manifest,
    write_records,
)
from kitchen.optional import require

_TOKEN = re.compile(r"\S+")


def shingles(text: str, k: int) -> set[bytes]:
    """The set of ``k``-token shingles of ``text`` (the whole text if it is shorter)."""
    toks = _TOKEN.findall(text)
    if len(toks) <= k:
        return {" ".join(toks).encode()}
    return {" ".join(toks[i : i + k]).encode() for i in range(len(toks) - k + 1)}


def dedup_records(
    docs: list[dict[str, Any]],
    *,
    near: bool = True,
    threshold: float = 0.8,
    num_perm: int = 128,
    k: int = 5,
    seed: int = 1,
    text_field: str = "text",
    order: Literal["shortest", "id"] = "shortest",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(kept, dropped)``; each dropped entry is ``{id, duplicate_of, kind, similarity}``.

    Documents are visited in ``order`` and the first of a group is kept: ``"shortest"``
    prefers fewer path segments, then shorter ids (the canonical ``pkg/response.py`` over
    ``pkg/compat/response.py``), then the id; ``"id"`` is plain id order.
    """

    def rank(d: dict[str, Any]) -> tuple[Any, ...]:
        i = str(d["id"])
        return (i.count("/"), len(i), i) if order == "shortest" else (i,)

    ordered = sorted(docs, key=rank)
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    by_hash: dict[str, str] = {}
    lsh: Any = None
    minhashes: dict[str, Any] = {}
    if near:
        ds = require("datasketch", "data")
        lsh = ds.MinHashLSH(
            threshold=threshold, num_perm=num_perm, params=_lsh_params(threshold, num_perm)
        )
    for d in ordered:
        text = d[text_field]
        h = d.get("sha256") or _sha(text)
        if h in by_hash:
            dropped.append(
                {"id": d["id"], "duplicate_of": by_hash[h], "kind": "exact", "similarity": 1.0}
            )
            continue
        if near:
            m = ds.MinHash(num_perm=num_perm, seed=seed)
            m.update_batch(sorted(shingles(text, k)))
            best, best_sim = None, -1.0
            for cand in sorted(lsh.query(m)):
                sim = float(m.jaccard(minhashes[cand]))
                if sim > best_sim:
                    best, best_sim = cand, sim
            if best is not None and best_sim >= threshold:
                dropped.append(
                    {
                        "id": d["id"],
                        "duplicate_of": best,
                        "kind": "near",
                        "similarity": round(best_sim, 4),
                    }
                )
                continue
            lsh.insert(d["id"], m)
            minhashes[d["id"]] = m
        by_hash[h] = d["id"]
        kept.append(d)
    return kept, dropped


@functools.lru_cache(maxsize=32)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int] | None:
    """datasketch's (bands, rows) for a threshold; it integrates numerically, so memoise."""
    try:
        from datasketch.lsh import _optimal_param

        # weigh false negatives 9:1 - a candidate pair is verified by its estimated
        # Jaccard anyway, so a false positive only costs one comparison
        b, r = _optimal_param(threshold, num_perm, 0.1, 0.9)
        return int(b), int(r)
    except Exception:  # private helper moved: let MinHashLSH compute it
        return None


def _sha(text: str) -> str:
    from kitchen.data.stages.manifest import sha256_text

    return sha256_text(text)


@dataclasses.dataclass(kw_only=True)
class Dedup(DataStage):
    """Deduplicate the documents of the normalise manifest at ``ctx.state[input]``."""

    input: str = "normalised"
    output: str = "deduped"
    near: bool = True
    threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 5
    seed: int = 1
    order: Literal["shortest", "id"] = "shortest"

    kind = "dedup"

    def __call__(self, ctx: Context) -> dict[str, Any]:
        src = state_path(ctx, self.input, "normalise manifest")
        docs = listed_records(src, "normalise", "documents")
        kept, dropped = dedup_records(
            docs,
            near=self.near,
            threshold=self.threshold,
            num_perm=self.num_perm,
            k=self.shingle,
            seed=self.seed,
            order=self.order,
        )
        out = self.dir()
        digest = write_records(out / "documents.jsonl", kept)
        path = out / "dedup.json"
        write_manifest(
            path,
            "dedup",
            {
                "documents": {"file": "documents.jsonl", "sha256": digest, "count": len(kept)},
                "params": {
                    "near": self.near,
                    "threshold": self.threshold,
                    "num_perm": self.num_perm,
                    "shingle": self.shingle,
                    "seed": self.seed,
                    "order": self.order,
                },
                "stats": {
                    "before": len(docs),
                    "after": len(kept),
                    "exact_dropped": sum(1 for x in dropped if x["kind"] == "exact"),
                    "near_dropped": sum(1 for x in dropped if x["kind"] == "near"),
                },
                "dropped": dropped,
            },
        )
        return {self.output: str(path)}


def kept_documents(manifest: str | Path) -> list[dict[str, Any]]:
    """The documents a dedup manifest kept (checksum-verified)."""
    return listed_records(manifest, "dedup", "documents")

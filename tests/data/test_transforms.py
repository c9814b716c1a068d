"""Normalise, dedup and split: unit tests and hypothesis properties."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitchen.context import Context
from kitchen.data.stages import (
    DEFAULT_RULES,
    Normalise,
    Rule,
    dedup_records,
    normalise_text,
    register_rule,
    resolve_rules,
    split_ids,
)
from kitchen.data.stages.manifest import sha256_text, write_manifest
from kitchen.errors import UsageError
from kitchen.io import read_jsonl
from kitchen.ports.bundle import Ports
from tests.data.helpers import DirBlobStore

RULES = resolve_rules(DEFAULT_RULES)

LICENSED = """# Copyright (c) 2024 Example Corp.
# Licensed under the Apache License, Version 2.0.

\"\"\"Routing.\"\"\"\r\n\r\n\r\n\r\n\r\ndef f():\t \r\n\treturn 1   \r\n\r\n"""


def test_default_rules_strip_licence_and_whitespace() -> None:
    text, fired = normalise_text("\ufeff" + LICENSED, "a.py", RULES)
    assert text == '"""Routing."""\n\n\ndef f():\n    return 1\n'
    assert set(fired) >= {"bom", "line_endings", "trailing_whitespace", "licence_header", "tabs"}


def test_header_without_licence_words_is_kept() -> None:
    src = "#!/usr/bin/env python\n# Routing helpers\nx = 1\n"
    assert normalise_text(src, "a.py", RULES)[0] == src
    lic = "#!/usr/bin/env python\n# SPDX-License-Identifier: MIT\nx = 1\n"
    assert normalise_text(lic, "a.py", RULES)[0] == "#!/usr/bin/env python\nx = 1\n"
    md = "<!-- Copyright 2020 A -->\n# Title\n"
    assert normalise_text(md, "a.md", RULES)[0] == "# Title\n"


def test_user_rules_extend_the_defaults() -> None:
    rule = register_rule("test_no_todo", lambda t, p: t.replace("TODO ", ""), replace=True)
    rules = resolve_rules(
        (
            *DEFAULT_RULES,
            "test_no_todo",
            Rule("upper_md", str.upper.__call__ if False else (lambda t, p: t.upper()), ("*.md",)),
        )
    )
    assert normalise_text("x = 1  # TODO fix\n", "a.py", rules)[0] == "x = 1  # fix\n"
    assert normalise_text("hi\n", "a.md", rules)[0] == "HI\n"
    assert "code=" in repr(rule)  # the rule's source is part of the stage's cache key
    with pytest.raises(UsageError, match=r"unknown normalise rule 'nope'.*register_rule"):
        resolve_rules(("nope",))


texts = st.lists(
    st.sampled_from([*"ab #\t\r\n\ufeff/*<!->cC", "licence", "Copyright", "x = 1"]),
    max_size=80,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(texts, st.sampled_from(["a.py", "b.md", "c.txt"]))
def test_normalise_is_idempotent(text: str, path: str) -> None:
    once, _ = normalise_text(text, path, RULES)
    assert normalise_text(once, path, RULES)[0] == once
    assert "\r" not in once and not once.startswith("\ufeff")


def _docs(texts: list[str]) -> list[dict]:
    return [{"id": f"d{i:03d}", "text": t, "sha256": sha256_text(t)} for i, t in enumerate(texts)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), max_size=25))
def test_exact_dedup_keeps_exactly_one_of_each_distinct_text(texts: list[str]) -> None:
    kept, dropped = dedup_records(_docs(texts), near=False)
    assert sorted(d["text"] for d in kept) == sorted(set(texts))
    kept_ids = {d["id"] for d in kept}
    by_id = {d["id"]: d["text"] for d in _docs(texts)}
    for x in dropped:
        assert x["duplicate_of"] in kept_ids and by_id[x["duplicate_of"]] == by_id[x["id"]]


WORDS = [f"w{i}" for i in range(5000)]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 8), st.integers(0, 2**32), st.data())
def test_near_dedup_never_drops_a_unique_item(n: int, seed: int, data: st.DataObject) -> None:
    rng = random.Random(seed)
    texts = [" ".join(rng.sample(WORDS, 80)) for _ in range(n)]  # pairwise nearly disjoint
    planted = list(texts)
    for t in texts[: n // 2]:
        planted.append(t)  # exact copy
        words = t.split()
        words[data.draw(st.integers(0, len(words) - 1))] = "CHANGED"
        planted.append(" ".join(words))  # near copy (one word of 80 changed)
    docs = _docs(planted)
    kept, dropped = dedup_records(docs, near=True, threshold=0.6)
    # every original survives: ids d000.. sort first, so each original is kept itself
    assert sorted(d["text"] for d in kept) == sorted(texts)
    kept_ids = {d["id"] for d in kept}
    assert len(kept) + len(dropped) == len(planted)
    for x in dropped:
        assert x["duplicate_of"] in kept_ids and x["id"] not in kept_ids
    assert sum(x["kind"] == "exact" for x in dropped) == n // 2
    assert sum(x["kind"] == "near" for x in dropped) == n // 2


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=8), max_size=60, unique=True),
    st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)).filter(lambda f: sum(f) > 0.01),
    st.integers(0, 10_000),
)
def test_split_is_a_deterministic_partition(ids: list[str], fractions: tuple, seed: int) -> None:
    parts = split_ids(ids, fractions, seed)
    flat = parts["train"] + parts["valid"] + parts["test"]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
    assert split_ids(list(reversed(ids)), fractions, seed) == parts


def test_split_depends_on_the_seed() -> None:
    ids = [f"s{i}" for i in range(50)]
    a = split_ids(ids, (0.8, 0.1, 0.1), 0)
    assert {k: len(v) for k, v in a.items()} == {"train": 40, "valid": 5, "test": 5}
    assert a != split_ids(ids, (0.8, 0.1, 0.1), 1)


def test_normalise_stage_rejects_binary_and_empty_files(tmp_path: Path) -> None:
    blob = DirBlobStore(tmp_path / "b")
    files = {
        "a.py": b"x = 1\r\n",
        "bin.dat": b"\xff\xfe\x00",
        "empty.md": b"  \n\n",
        "nul.txt": b"a\x00b",
    }
    entries = []
    for name, data in files.items():
        info = blob.put(f"sources/s/{name}", data)
        entries.append(
            {"path": name, "key": info.key, "sha256": info.checksum[7:], "size": info.size}
        )
    write_manifest(tmp_path / "fetch.json", "fetch", {"sources": [{"name": "s", "files": entries}]})
    ctx = Context(ports=Ports(blob=blob), state={"fetched": str(tmp_path / "fetch.json")})
    out = Normalise(out_dir=str(tmp_path / "n"))(ctx)
    docs = read_jsonl(Path(out["normalised"]).parent / "documents.jsonl")
    assert [(d["id"], d["text"], d["lang"]) for d in docs] == [("s/a.py", "x = 1\n", "python")]
    rejected = {r["id"]: r["reason"] for r in read_jsonl(tmp_path / "n" / "rejected.jsonl")}
    assert rejected == {
        "s/bin.dat": "not UTF-8 text (byte 0); binary files are skipped",
        "s/empty.md": "empty after normalisation",
        "s/nul.txt": "contains NUL bytes (binary file)",
    }

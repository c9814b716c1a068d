"""The SDK compatibility matrix in docs/remote.md is complete and current."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tinker")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sdk_matrix.py"


def _matrix() -> Any:
    spec = importlib.util.spec_from_file_location("sdk_matrix", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_sdk_method_is_classified() -> None:
    m = _matrix()
    assert m.unclassified() == []
    listed = {f"{c}.{n}" for c, ns in m.sdk_methods().items() for n in ns}
    assert len(listed) > 50  # the four client classes were really introspected
    stale = sorted(set(m.STATUS) - listed)
    assert not stale, f"classified methods the SDK no longer has: {stale}"


def test_docs_table_is_the_generated_one() -> None:
    m = _matrix()
    doc = m.DOC.read_text(encoding="utf-8")
    assert m.updated(doc) == doc, "docs/remote.md is stale: run python scripts/sdk_matrix.py"
    for cls, methods in m.sdk_methods().items():
        for name in methods:
            assert f"| `{cls}` | `{name}` |" in doc


def test_proving_tests_exist() -> None:
    """Each ``path::test`` the matrix cites names a test function in that file."""
    m = _matrix()
    root = SCRIPT.parents[1]
    for _, note in m.STATUS.values():
        for ref in note.split():
            if "::" in ref:
                path, _, name = ref.partition("::")
                text = (root / path).read_text(encoding="utf-8")
                assert f"def {name.rstrip(',')}(" in text, ref

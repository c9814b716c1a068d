"""The Python snippets in the user docs run as written (each file in one namespace, in order)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/getting_started.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("doc", DOCS)
def test_snippets_run(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = BLOCK.findall((ROOT / doc).read_text(encoding="utf-8"))
    assert blocks, f"{doc} has no python snippets"
    monkeypatch.chdir(tmp_path)  # snippets may write runs/...
    namespace: dict[str, object] = {"__name__": f"snippet_{Path(doc).stem}"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{doc}#snippet{i}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{doc} snippet {i} failed: {exc!r}\n{code}") from exc
    assert os.getcwd() == str(tmp_path)

"""``NoopDatasetStore``: datasets in memory, plus a few deterministic built-in sources."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kitchen.errors import DataError
from kitchen.ports.dataset import ListDataset, Row

SFT_TINY = "noop://sft-tiny"


def sft_tiny_rows(n: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` chat rows of small-integer addition ("What is 3+4?" → "7"), fixed for a seed."""
    rng = random.Random(f"kitchen-noop-sft-tiny:{seed}")
    rows = []
    for _ in range(n):
        a, b = rng.randrange(10), rng.randrange(10)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a}+{b}?"},
                    {"role": "assistant", "content": str(a + b)},
                ]
            }
        )
    return rows


BUILTINS: dict[str, Callable[[], list[dict[str, Any]]]] = {SFT_TINY: sft_tiny_rows}


class NoopDatasetStore:
    """Rows kept per source string in memory; ``save``/``register`` put them there.

    ``load(source, split=...)`` looks up ``"<source>:<split>"`` first, then ``source``, and
    finally reads ``source`` as a local JSONL file if one exists (so noop runs can use real
    data files). Built-in sources: ``noop://sft-tiny`` (64 deterministic chat rows of
    addition).
    """

    def __init__(self) -> None:
        self._data: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def register(self, source: str, rows: Iterable[Row]) -> None:
        self._data[source] = [copy.deepcopy(dict(r)) for r in rows]

    def _lookup(self, source: str, split: str | None) -> list[dict[str, Any]] | None:
        keys = ([f"{source}:{split}"] if split is not None else []) + [source]
        for key in keys:
            if key in self._data:
                return self._data[key]
            if key in BUILTINS:
                return BUILTINS[key]()
        return None

    def load(self, source: str, *, split: str | None = None) -> ListDataset:
        self.calls.append(("load", {"source": source, "split": split}))
        rows = self._lookup(source, split)
        if rows is None and split in (None, "train"):
            rows = _read_local_jsonl(source)
        if rows is None:
            known = sorted({*self._data, *BUILTINS})
            raise DataError(
                source,
                None,
                None,
                f"no such dataset{f' (split {split!r})' if split else ''}; register it first "
                f"with NoopDatasetStore.register() or save(); known sources: {known}",
            )
        return ListDataset(copy.deepcopy(rows), name=source)

    def save(self, rows: Iterable[Row], dest: str) -> str:
        self.calls.append(("save", {"dest": dest}))
        self.register(dest, rows)
        return dest

    def exists(self, source: str) -> bool:
        return source in self._data or source in BUILTINS


def _read_local_jsonl(source: str) -> list[dict[str, Any]] | None:
    """Rows of a local ``.jsonl`` file, or None when ``source`` is not one."""
    path = Path(source)
    if path.suffix != ".jsonl" or not path.is_file():
        return None
    rows: list[dict[str, Any]] = []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(source, None, None, f"cannot read it ({exc.strerror or exc})") from None
    for i, raw in enumerate(data.splitlines()):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                source,
                i,
                None,
                f"is not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
            ) from None
        if "\x00" in line:
            raise DataError(source, i, None, "contains a NUL byte; is this a text file?")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(source, i, None, f"not valid JSON ({exc.msg}); fix the line") from None
        except RecursionError:
            raise DataError(source, i, None, "nests too deeply to be a dataset row") from None
        if not isinstance(row, dict):
            raise DataError(source, i, None, "each line must be a JSON object")
        rows.append(row)
    return rows

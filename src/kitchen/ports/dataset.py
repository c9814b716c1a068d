"""The dataset port: rows of JSON-like records from a file, URL or registry."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

Row = Mapping[str, Any]


@runtime_checkable
class Dataset(Protocol):
    """An indexable, sized sequence of rows."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Row: ...

    def __iter__(self) -> Iterator[Row]: ...


@runtime_checkable
class DatasetStore(Protocol):
    """Loads and stores datasets by source string (a path, URL or name)."""

    def load(self, source: str, *, split: str | None = None) -> Dataset:
        """Load a dataset; bad rows raise :class:`kitchen.errors.DataError` naming them."""
        ...

    def save(self, rows: Iterable[Row], dest: str) -> str:
        """Write rows atomically and return the location written."""
        ...

    def exists(self, source: str) -> bool: ...


class ListDataset(Sequence[Row]):
    """A dataset backed by a Python list (used by noop and by tests)."""

    def __init__(self, rows: Iterable[Row], name: str = "memory") -> None:
        self._rows = list(rows)
        self.name = name

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Row:  # type: ignore[override]
        return self._rows[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def __repr__(self) -> str:
        return f"ListDataset({self.name!r}, rows={len(self._rows)})"

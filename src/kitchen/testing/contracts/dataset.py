"""Contract tests for :class:`kitchen.ports.DatasetStore`.

Abstract fixtures: ``dataset_store`` and ``dataset_dest`` (a destination string ``save``
accepts, e.g. ``str(tmp_path / "rows.jsonl")`` for a file store).
Optional: ``missing_source`` (a source that does not exist), ``rows``.
"""

from __future__ import annotations

from typing import Any

import pytest

from kitchen.errors import DataError
from kitchen.ports import DatasetStore


class DatasetStoreContract:
    @pytest.fixture
    def dataset_store(self, tmp_path: Any) -> DatasetStore:
        raise NotImplementedError("the concrete suite must provide `dataset_store`")

    @pytest.fixture
    def dataset_dest(self, tmp_path: Any) -> str:
        raise NotImplementedError("the concrete suite must provide `dataset_dest`")

    @pytest.fixture
    def missing_source(self, tmp_path: Any) -> str:
        return str(tmp_path / "no-such-dataset.jsonl")

    @pytest.fixture
    def rows(self) -> list[dict[str, Any]]:
        return [
            {"prompt": "What is 2+2?", "completion": "4"},
            {"prompt": "Say hi", "completion": "hi", "score": 0.5},
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
        ]

    def test_save_then_load_round_trips(
        self, dataset_store: DatasetStore, dataset_dest: str, rows: list[dict[str, Any]]
    ) -> None:
        where = dataset_store.save(rows, dataset_dest)
        assert isinstance(where, str) and where
        ds = dataset_store.load(where)
        assert len(ds) == len(rows)
        assert [dict(r) for r in ds] == rows
        assert dict(ds[1]) == rows[1]

    def test_exists(
        self,
        dataset_store: DatasetStore,
        dataset_dest: str,
        missing_source: str,
        rows: list[dict[str, Any]],
    ) -> None:
        assert not dataset_store.exists(missing_source)
        where = dataset_store.save(rows, dataset_dest)
        assert dataset_store.exists(where)

    def test_missing_source_raises_clear_error(
        self, dataset_store: DatasetStore, missing_source: str
    ) -> None:
        with pytest.raises((FileNotFoundError, DataError)) as info:
            dataset_store.load(missing_source)
        assert missing_source in str(info.value)

"""Contract tests for :class:`kitchen.ports.BlobStore`.

Abstract fixture: ``blob_store`` (a fresh, empty store per test).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitchen.ports import BlobInfo, BlobStore

BAD_KEYS = ["../escape", "a/../../b", "a/..", "/etc/passwd"]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BlobStoreContract:
    @pytest.fixture
    def blob_store(self, tmp_path: Any) -> BlobStore:
        raise NotImplementedError("the concrete suite must provide `blob_store`")

    def test_put_get_exists_info(self, blob_store: BlobStore) -> None:
        assert not blob_store.exists("dir/a.bin")
        info = blob_store.put("dir/a.bin", b"hello")
        assert isinstance(info, BlobInfo)
        assert info == BlobInfo("dir/a.bin", 5, sha(b"hello"))
        assert blob_store.exists("dir/a.bin")
        assert blob_store.get("dir/a.bin") == b"hello"
        assert blob_store.info("dir/a.bin") == info

    def test_overwrite_replaces(self, blob_store: BlobStore) -> None:
        blob_store.put("k", b"old value")
        info = blob_store.put("k", b"new")
        assert blob_store.get("k") == b"new"
        assert info.size == 3 and info.checksum == sha(b"new")
        assert blob_store.info("k").checksum == sha(b"new")

    def test_delete(self, blob_store: BlobStore) -> None:
        blob_store.put("gone", b"x")
        blob_store.delete("gone")
        assert not blob_store.exists("gone")
        with pytest.raises(KeyError):
            blob_store.get("gone")
        with pytest.raises(KeyError):
            blob_store.delete("gone")

    def test_missing_key(self, blob_store: BlobStore) -> None:
        with pytest.raises(KeyError):
            blob_store.get("nope")
        with pytest.raises(KeyError):
            blob_store.info("nope")

    def test_list_prefix_sorted(self, blob_store: BlobStore) -> None:
        for key in ["b/2", "a/2", "a/1", "b/1", "c"]:
            blob_store.put(key, key.encode())
        assert blob_store.list() == ["a/1", "a/2", "b/1", "b/2", "c"]
        assert blob_store.list("a/") == ["a/1", "a/2"]
        assert blob_store.list("b") == ["b/1", "b/2"]
        assert blob_store.list("zzz") == []

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_bad_keys_raise_value_error_naming_the_key(
        self, blob_store: BlobStore, key: str
    ) -> None:
        with pytest.raises(ValueError) as info:
            blob_store.put(key, b"x")
        assert key in str(info.value)
        with pytest.raises(ValueError) as info:
            blob_store.get(key)
        assert key in str(info.value)

    @settings(
        max_examples=25,
        deadline=None,
        # Every concrete suite is a different `self` for the one mixin method; several
        # suites in one session are expected, not a mistake.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(data=st.binary(max_size=2048))
    def test_bytes_round_trip(self, blob_store: BlobStore, data: bytes) -> None:
        info = blob_store.put("prop/blob", data)
        assert blob_store.get("prop/blob") == data
        assert info.size == len(data)
        assert info.checksum == sha(data)

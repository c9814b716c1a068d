"""FsspecBlobStore on a local directory, ``memory://`` and a real S3 API (moto's server).

The S3 tests talk HTTP to moto's standalone server on 127.0.0.1 (started here, stopped
afterwards) through s3fs/aiobotocore, exactly as they would talk to AWS or MinIO.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kitchen.adapters.blob import BlobChecksumError, FsspecBlobStore, validate_key
from kitchen.errors import AdapterUnavailable
from kitchen.ports import BlobInfo, BlobStore
from kitchen.testing import BlobStoreContract

BAD_KEYS = [
    "",
    "/abs/path",
    "../escape",
    "a/../../b",
    "a/./b",
    "a//b",
    "a/",
    "a\\b",
    "C:/windows",
    "s3://bucket/key",
    "a/\x00b",
    "a/.b.sha256",
    ".x.tmp",
]


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- a real S3 API on loopback ----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_options(moto_endpoint: str) -> dict[str, Any]:
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
    }


@pytest.fixture(scope="module")
def s3_bucket(moto_endpoint: str) -> str:
    name = "kitchen-test"
    _boto(moto_endpoint).create_bucket(Bucket=name)
    return name


def _boto(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture(params=["local", "memory", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, FsspecBlobStore]:
    kind = request.param
    if kind == "local":
        return kind, FsspecBlobStore(str(tmp_path / "blobs"))
    if kind == "memory":
        return kind, FsspecBlobStore(f"memory://kitchen-{uuid.uuid4().hex}")
    opts = request.getfixturevalue("s3_options")
    bucket = request.getfixturevalue("s3_bucket")
    return kind, FsspecBlobStore(f"s3://{bucket}/{uuid.uuid4().hex}/runs", **opts)


@pytest.fixture
def store(backend: tuple[str, FsspecBlobStore]) -> FsspecBlobStore:
    return backend[1]


# -- the shared BlobStore contract on every backend ---------------------------------------
class TestLocalContract(BlobStoreContract):
    @pytest.fixture
    def blob_store(self, tmp_path: Path) -> BlobStore:
        return FsspecBlobStore(str(tmp_path / "contract"))


class TestMemoryContract(BlobStoreContract):
    @pytest.fixture
    def blob_store(self, tmp_path: Path) -> BlobStore:
        return FsspecBlobStore(f"memory://contract-{uuid.uuid4().hex}")


class TestS3Contract(BlobStoreContract):
    @pytest.fixture
    def blob_store(self, s3_options: dict[str, Any], s3_bucket: str) -> BlobStore:
        return FsspecBlobStore(f"s3://{s3_bucket}/contract-{uuid.uuid4().hex}", **s3_options)


# -- more of the port's semantics, and this adapter's extras, on every backend -------------
def test_is_a_blobstore(store: FsspecBlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_put_get_info_roundtrip(store: FsspecBlobStore) -> None:
    data = bytes(range(256)) * 17
    info = store.put("ckpt/step-1/weights.bin", data)
    assert info == BlobInfo("ckpt/step-1/weights.bin", len(data), _sha(data))
    assert store.get("ckpt/step-1/weights.bin") == data
    assert store.info("ckpt/step-1/weights.bin") == info
    assert store.exists("ckpt/step-1/weights.bin")
    assert not store.exists("ckpt/step-1")  # a prefix is not a key
    assert not store.exists("ckpt/step-2/weights.bin")


def test_empty_blob_and_overwrite(store: FsspecBlobStore) -> None:
    assert store.put("e", b"").checksum == _sha(b"")
    assert store.get("e") == b""
    store.put("k", b"first")
    store.put("k", b"second value")
    assert store.get("k") == b"second value"
    assert store.info("k") == BlobInfo("k", 12, _sha(b"second value"))


def test_missing_keys_raise_keyerror(store: FsspecBlobStore) -> None:
    for op in (store.get, store.info, store.delete):
        with pytest.raises(KeyError):
            op("nope/missing")
    with pytest.raises(KeyError):
        store.open("nope/missing")
    assert store.list() == []


def test_list_prefix_sorted_and_delete(store: FsspecBlobStore) -> None:
    for key in ["b/2", "a/1", "a/10/x", "ab", "c"]:
        store.put(key, key.encode())
    assert store.list() == ["a/1", "a/10/x", "ab", "b/2", "c"]
    assert store.list("a") == ["a/1", "a/10/x", "ab"]
    assert store.list("a/") == ["a/1", "a/10/x"]
    assert store.list("a/1") == ["a/1", "a/10/x"]
    assert store.list("zzz") == []
    store.delete("a/1")
    assert not store.exists("a/1")
    assert store.list("a/") == ["a/10/x"]
    with pytest.raises(KeyError):
        store.delete("a/1")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_rejected_with_a_clear_error(store: FsspecBlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key") as err:
        store.put(key, b"x")
    assert repr(key) in str(err.value)
    for op in (store.get, store.exists, store.delete, store.info, store.url_for):
        with pytest.raises(ValueError, match="invalid blob key"):
            op(key)
    with pytest.raises(ValueError, match="invalid key prefix"):
        store.list("../")


def test_dotfiles_are_ordinary_keys(store: FsspecBlobStore) -> None:
    store.put("repo/.gitignore", b"*.pyc\n")
    assert store.get("repo/.gitignore") == b"*.pyc\n"
    assert store.list("repo/") == ["repo/.gitignore"]


def test_a_second_instance_sees_the_same_blobs(backend: tuple[str, FsspecBlobStore]) -> None:
    _, store = backend
    store.put("shared/x", b"persisted")
    again = FsspecBlobStore(store.url, **store.fs.storage_options)
    assert again.get("shared/x") == b"persisted"
    assert again.info("shared/x").checksum == _sha(b"persisted")


def test_url_for(backend: tuple[str, FsspecBlobStore]) -> None:
    kind, store = backend
    url = store.url_for("a/b.bin")
    assert url.endswith("/a/b.bin")
    assert url.startswith({"local": "file://", "memory": "memory://", "s3": "s3://"}[kind])


def test_put_file_get_file_and_streams(store: FsspecBlobStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    payload = os.urandom(3 * (1 << 20) + 123)  # several read chunks
    src.write_bytes(payload)
    info = store.put_file("big/model.safetensors", src)
    assert info == BlobInfo("big/model.safetensors", len(payload), _sha(payload))
    assert store.info("big/model.safetensors") == info
    dest = tmp_path / "out" / "model.safetensors"
    assert store.get_file("big/model.safetensors", dest) == info
    assert dest.read_bytes() == payload
    with store.open("big/model.safetensors") as fh:
        assert fh.read(10) == payload[:10]
        assert fh.read() == payload[10:]
    with store.open("streamed/log.txt", "wb") as fh:
        fh.write(b"line 1\n")
        fh.write(b"line 2\n")
    assert store.get("streamed/log.txt") == b"line 1\nline 2\n"
    assert store.info("streamed/log.txt").checksum == _sha(b"line 1\nline 2\n")


def test_failed_stream_write_stores_nothing(store: FsspecBlobStore) -> None:
    store.put("w", b"old")
    with pytest.raises(RuntimeError), store.open("w", "wb") as fh:
        fh.write(b"half of the new")
        raise RuntimeError("writer crashed")
    assert store.get("w") == b"old"
    with pytest.raises(ValueError, match="unsupported mode"):
        store.open("w", "ab")


# -- checksums are verified ---------------------------------------------------------------
def _corrupt(kind: str, store: FsspecBlobStore, key: str, data: bytes) -> None:
    """Change the stored bytes behind the store's back, keeping its checksum record."""
    path = store._path(key)
    if kind == "local":
        Path(path).write_bytes(data)
    elif kind == "memory":
        store.fs.pipe_file(path, data)
    else:
        bucket, obj, _ = store.fs.split_path(path)
        old = store.fs.call_s3("head_object", Bucket=bucket, Key=obj)["Metadata"]
        endpoint = store.fs.client_kwargs["endpoint_url"]
        _boto(endpoint).put_object(Bucket=bucket, Key=obj, Body=data, Metadata=old)


def test_corruption_is_detected(backend: tuple[str, FsspecBlobStore], tmp_path: Path) -> None:
    kind, store = backend
    store.put("m/weights", b"good bytes")
    _corrupt(kind, store, "m/weights", b"evil bytes")
    with pytest.raises(BlobChecksumError, match="m/weights") as err:
        store.get("m/weights")
    assert err.value.expected == _sha(b"good bytes")
    assert err.value.actual == _sha(b"evil bytes")
    assert "put the key again" in str(err.value)
    dest = tmp_path / "dl" / "weights"
    with pytest.raises(BlobChecksumError):
        store.get_file("m/weights", dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(BlobChecksumError), store.open("m/weights") as fh:
        fh.read()
    store.put("m/weights", b"repaired")  # putting again repairs it
    assert store.get("m/weights") == b"repaired"


def test_blobs_without_a_checksum_record_are_hashed(backend: tuple[str, FsspecBlobStore]) -> None:
    kind, store = backend
    path = store._path("foreign/file.txt")
    if kind == "local":
        Path(path).parent.mkdir(parents=True)
        Path(path).write_bytes(b"written by another tool")
    elif kind == "memory":
        store.fs.pipe_file(path, b"written by another tool")
    else:
        bucket, obj, _ = store.fs.split_path(path)
        _boto(store.fs.client_kwargs["endpoint_url"]).put_object(
            Bucket=bucket, Key=obj, Body=b"written by another tool"
        )
    assert store.get("foreign/file.txt") == b"written by another tool"
    assert store.info("foreign/file.txt").checksum == _sha(b"written by another tool")
    assert store.list("foreign/") == ["foreign/file.txt"]


def test_s3_checksum_is_object_metadata(
    s3_options: dict[str, Any], s3_bucket: str, moto_endpoint: str
) -> None:
    store = FsspecBlobStore(f"s3://{s3_bucket}/meta-{uuid.uuid4().hex}", **s3_options)
    store.put("k", b"payload")
    bucket, obj, _ = store.fs.split_path(store._path("k"))
    head = _boto(moto_endpoint).head_object(Bucket=bucket, Key=obj)
    assert "sha256:" + head["Metadata"]["sha256"] == _sha(b"payload")
    listed = _boto(moto_endpoint).list_objects_v2(Bucket=bucket, Prefix=obj.rsplit("/", 1)[0])
    assert [o["Key"] for o in listed["Contents"]] == [obj]  # no sidecar objects on S3


# -- atomicity and crash states (sidecar backends) ---------------------------------------
@pytest.fixture(params=["local", "memory"])
def sidecar_store(request: pytest.FixtureRequest, tmp_path: Path) -> FsspecBlobStore:
    if request.param == "local":
        return FsspecBlobStore(str(tmp_path / "blobs"))
    return FsspecBlobStore(f"memory://kitchen-{uuid.uuid4().hex}")


def test_sidecar_is_hidden_from_listing(sidecar_store: FsspecBlobStore) -> None:
    sidecar_store.put("a/b", b"x")
    side = sidecar_store._sidecar(sidecar_store._path("a/b"))
    assert side.endswith("/a/.b.sha256")
    rec = json.loads(sidecar_store.fs.cat_file(side))
    assert rec == {"sha256": _sha(b"x"), "size": 1}
    assert sidecar_store.list() == ["a/b"]
    sidecar_store.delete("a/b")
    assert not sidecar_store.fs.exists(side)


def test_put_interrupted_before_data_keeps_old_value(sidecar_store: FsspecBlobStore) -> None:
    store = sidecar_store
    store.put("k", b"old")
    path = store._path("k")
    # the crash state: pending sidecar for the new value written, data not yet replaced
    store._write_sidecar(
        path, {"sha256": _sha(b"new"), "size": 3, "pending": True, "replaces": _sha(b"old")}
    )
    assert store.get("k") == b"old"
    assert store.info("k").checksum == _sha(b"old")
    store.put("k", b"newer")  # the next put records the checksum that is really there
    assert store.get("k") == b"newer"


def test_put_interrupted_after_data_reads_new_value(sidecar_store: FsspecBlobStore) -> None:
    store = sidecar_store
    store.put("k", b"old")
    path = store._path("k")
    store._write_sidecar(
        path, {"sha256": _sha(b"new"), "size": 3, "pending": True, "replaces": _sha(b"old")}
    )
    store._write_raw(path, b"new")
    assert store.get("k") == b"new"
    assert store.info("k").checksum == _sha(b"new")
    store._write_raw(path, b"bad")  # neither old nor new: corruption
    with pytest.raises(BlobChecksumError):
        store.get("k")


def test_first_put_interrupted_leaves_no_key(sidecar_store: FsspecBlobStore) -> None:
    store = sidecar_store
    store._write_sidecar(store._path("fresh"), {"sha256": _sha(b"v"), "size": 1, "pending": True})
    assert not store.exists("fresh")
    assert store.list() == []
    with pytest.raises(KeyError):
        store.get("fresh")


def test_local_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FsspecBlobStore(str(tmp_path / "blobs"))
    store.put("k", b"old value")
    real_replace = os.replace
    calls = {"n": 0}

    def crash_on_data(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if str(dst).endswith("/k"):
            raise OSError("disk went away mid-put")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_data)
    with pytest.raises(OSError, match="disk went away"):
        store.put("k", b"new value")
    monkeypatch.setattr(os, "replace", real_replace)
    assert store.get("k") == b"old value"
    assert store.info("k").checksum == _sha(b"old value")
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == [".k.sha256", "k"]
    assert store.list() == ["k"]


def test_put_over_a_prefix_is_refused(sidecar_store: FsspecBlobStore) -> None:
    sidecar_store.put("dir/child", b"x")
    with pytest.raises(ValueError, match="prefix"):
        sidecar_store.put("dir", b"y")


# -- construction -----------------------------------------------------------------------------
def test_validate_key_accepts_ordinary_keys() -> None:
    for key in ["a", "a/b.c", "runs/x/checkpoints/step-00000010/state.json", ".env", "a/.b"]:
        assert validate_key(key) == key


def test_missing_protocol_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    def no_pkg(url: str, **kw: Any) -> Any:
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_pkg)
    with pytest.raises(AdapterUnavailable, match=r"pip install 'kitchen\[s3\]'"):
        FsspecBlobStore("s3://bucket/prefix")

"""A :class:`~kitchen.ports.BlobStore` on any fsspec filesystem: local, ``memory://``, ``s3://``...

``FsspecBlobStore(url, **storage_options)`` keeps blobs under the root ``url``; a key
``a/b.bin`` lives at ``<url>/a/b.bin``. The storage options go to fsspec unchanged (for S3:
``key=``, ``secret=``, ``client_kwargs={"endpoint_url": ...}``, ...).

**Keys** are relative, ``/``-separated paths. Empty keys, absolute paths, ``.``/``..`` or empty
segments, backslashes and NUL are rejected with a :class:`ValueError` that says how to fix
the key. Basenames of the form ``.<name>.sha256`` and ``.<name>.tmp`` are reserved for the
store's own sidecar and temporary files.

**Atomic writes.** A ``put`` never leaves a torn value behind:

- local paths: the bytes go to a temporary file in the same directory, are fsynced and then
  renamed over the destination (:mod:`kitchen.io`);
- S3: a single ``PutObject`` (or a completed multipart upload) is atomic per object;
- ``memory://``: one dictionary assignment;
- other protocols: whatever the backend's ``pipe_file`` guarantees.

**Checksums.** Every ``put`` records ``sha256:<hex>`` of the bytes, and ``get``/``get_file``
and streams from ``open(key)`` verify it, raising :class:`BlobChecksumError` on a mismatch.

- On S3 the checksum is object metadata (``x-amz-meta-sha256``), written in the same
  request as the bytes, so data and checksum can never disagree after a crash.
- Elsewhere it is a sidecar file ``.<basename>.sha256`` next to the blob (JSON: ``sha256``,
  ``size``). A put writes the sidecar first marked *pending* with the checksum it replaces,
  then the data, then the sidecar again without the mark. After a crash between those
  steps a reader finds a pending sidecar, hashes the data and accepts either the old or the
  new value - whichever is really there - so an interrupted put reads as "not happened" or
  "happened", never as corruption. ``info`` reads the checksum from the sidecar without
  touching the data, except in that rare pending case.
- A blob with no recorded checksum (a file written by another tool) is hashed on read and
  accepted.

Writers: one writer per key at a time (as with files); different keys are independent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from kitchen.errors import AdapterUnavailable, KitchenError
from kitchen.io import atomic_write_bytes
from kitchen.ports.blob import BlobInfo

__all__ = ["BlobChecksumError", "FsspecBlobStore", "validate_key"]

_CHUNK = 1 << 20
_SIDECAR_RE = re.compile(r"^\..+\.sha256$")
_TMP_RE = re.compile(r"^\..+\.tmp$")
_META_KEY = "sha256"  # S3 user metadata key (x-amz-meta-sha256)

#: ``pip install`` hints for fsspec protocols whose implementation is a separate package.
_PROTOCOL_HINTS = {
    "s3": "pip install 'kitchen[s3]' (s3fs)",
    "s3a": "pip install 'kitchen[s3]' (s3fs)",
    "gcs": "pip install gcsfs",
    "gs": "pip install gcsfs",
    "az": "pip install adlfs",
    "abfs": "pip install adlfs",
}


class BlobChecksumError(KitchenError):
    """Stored bytes do not match the checksum recorded when they were written."""

    def __init__(self, key: str, url: str, expected: str, actual: str) -> None:
        self.key, self.url, self.expected, self.actual = key, url, expected, actual
        super().__init__(
            f"blob {key!r} at {url} is corrupt: recorded checksum {expected} but the stored "
            f"bytes hash to {actual}; put the key again (or delete it) to repair it"
        )


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative blob key, else raise ``ValueError``."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid blob key {key!r}: use a non-empty relative path like 'a/b.bin'")
    problem = None
    if "\x00" in key:
        problem = "contains a NUL character"
    elif "\\" in key:
        problem = "contains a backslash; separate segments with '/'"
    elif key.startswith("/") or re.match(r"^[A-Za-z]:", key) or "://" in key:
        problem = "is absolute; keys are relative to the store root - drop the leading part"
    else:
        for seg in key.split("/"):
            if seg == "":
                problem = "has an empty segment ('//' or a leading/trailing '/'); remove it"
            elif seg in (".", ".."):
                problem = f"has a {seg!r} segment; keys may not leave or alias the store root"
            if problem:
                break
        else:
            base = key.rsplit("/", 1)[-1]
            if _SIDECAR_RE.match(base) or _TMP_RE.match(base):
                problem = (
                    "uses a reserved basename ('.<name>.sha256' and '.<name>.tmp' hold the "
                    "store's checksums and temporary files); rename it"
                )
    if problem:
        raise ValueError(f"invalid blob key {key!r}: it {problem}")
    return key


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_stream(fh: IO[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while chunk := fh.read(_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return "sha256:" + h.hexdigest(), size


class FsspecBlobStore:
    """Blobs under an fsspec root URL, with atomic writes and verified sha256 checksums."""

    def __init__(self, url: str | os.PathLike[str], **storage_options: Any) -> None:
        import fsspec

        url = os.fspath(url)
        try:
            fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as exc:
            proto = url.split("://", 1)[0] if "://" in url else "file"
            hint = _PROTOCOL_HINTS.get(proto, f"install the fsspec implementation of {proto}://")
            raise AdapterUnavailable(
                f"the {proto}:// blob store needs an optional package ({exc}); "
                f"install it with: {hint}"
            ) from None
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/") if root not in ("/", "") else root
        protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
        self._local = "file" in protocols or "local" in protocols
        self._s3 = "s3" in protocols or type(fs).__name__ == "S3FileSystem"
        self._sidecars = not self._s3

    # -- paths ---------------------------------------------------------------------
    def _path(self, key: str) -> str:
        validate_key(key)
        if not self.root or self.root == "/":
            return self.root + key
        return f"{self.root}/{key}"

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        parent, _, base = path.rpartition("/")
        return parent, base

    def _sidecar(self, path: str) -> str:
        parent, base = self._split(path)
        return f"{parent}/.{base}.sha256"

    def url_for(self, key: str) -> str:
        """The full URL of ``key`` (``s3://bucket/prefix/key``, ``file:///...``)."""
        return str(self.fs.unstrip_protocol(self._path(key)))

    # -- low level -----------------------------------------------------------------
    def _invalidate(self, path: str | None = None) -> None:
        if self._s3:
            self.fs.invalidate_cache(path)

    def _read_raw(self, path: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            raise KeyError(path) from None
        except IsADirectoryError:
            raise KeyError(path) from None

    def _write_raw(self, path: str, data: bytes, checksum: str | None = None) -> None:
        if self._local:
            atomic_write_bytes(path, data)
        elif self._s3:
            meta = {"Metadata": {_META_KEY: checksum.split(":", 1)[1]}} if checksum else {}
            self.fs.pipe_file(path, data, **meta)
        else:
            parent, _ = self._split(path)
            if parent:
                self.fs.makedirs(parent, exist_ok=True)
            self.fs.pipe_file(path, data)

    def _s3_head(self, path: str) -> dict[str, Any] | None:
        bucket, key, _ = self.fs.split_path(path)
        try:
            out: dict[str, Any] = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return None
        return out

    def _is_file(self, path: str) -> bool:
        if self._s3:
            return self._s3_head(path) is not None
        try:
            return bool(self.fs.isfile(path))
        except FileNotFoundError:
            return False

    def _read_sidecar(self, path: str) -> dict[str, Any] | None:
        try:
            raw = self.fs.cat_file(self._sidecar(path))
        except (FileNotFoundError, IsADirectoryError):
            return None
        try:
            rec = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None  # a foreign or damaged sidecar: treat the blob as unrecorded
        return rec if isinstance(rec, dict) and isinstance(rec.get("sha256"), str) else None

    def _write_sidecar(self, path: str, record: dict[str, Any]) -> None:
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        self._write_raw(self._sidecar(path), data)

    def _accepted(
        self, path: str, head: dict[str, Any] | None = None
    ) -> tuple[str | None, set[str]]:
        """(checksum ``info`` reports without reading data, checksums ``get`` accepts).

        The first item is ``None`` when the data must be hashed to know its checksum
        (no record, or a put was interrupted). ``head`` is an S3 HEAD response already made.
        """
        if self._s3:
            head = head or self._s3_head(path)
            if head is None:
                raise KeyError(path)
            meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
            digest = meta.get(_META_KEY)
            if digest:
                return "sha256:" + digest, {"sha256:" + digest}
            return None, set()
        rec = self._read_sidecar(path)
        if rec is None:
            return None, set()
        accepted = {rec["sha256"]}
        if rec.get("pending"):
            if isinstance(rec.get("replaces"), str):
                accepted.add(rec["replaces"])
            return None, accepted
        return rec["sha256"], accepted

    def _check(self, key: str, path: str, actual: str, accepted: set[str]) -> None:
        if accepted and actual not in accepted:
            expected = " or ".join(sorted(accepted))
            raise BlobChecksumError(key, self.url_for(key), expected, actual)

    # -- the BlobStore port --------------------------------------------------------
    def put(self, key: str, data: bytes) -> BlobInfo:
        """Store ``data`` under ``key`` atomically and record its sha256."""
        path = self._path(key)
        data = bytes(data)
        checksum = "sha256:" + _sha256_hex(data)
        self._commit(path, checksum, len(data), lambda: self._write_raw(path, data, checksum))
        return BlobInfo(key=key, size=len(data), checksum=checksum)

    def _commit(self, path: str, checksum: str, size: int, write: Any) -> None:
        if not self._sidecars:
            write()
            self._invalidate(path)
            return
        if self.fs.isdir(path):
            raise ValueError(
                f"cannot put {path!r}: other keys live under it as a prefix; "
                "delete them first or choose another key"
            )
        replaces = self._current_checksum(path)
        pending: dict[str, Any] = {"sha256": checksum, "size": size, "pending": True}
        if replaces is not None:
            pending["replaces"] = replaces
        self._write_sidecar(path, pending)
        write()
        self._write_sidecar(path, {"sha256": checksum, "size": size})

    def _current_checksum(self, path: str) -> str | None:
        """Checksum of the data now under ``path`` (``None`` if absent)."""
        if not self._is_file(path):
            return None
        recorded, _ = self._accepted(path)
        if recorded is not None:
            return recorded
        with self.fs.open(path, "rb") as fh:
            return _hash_stream(fh)[0]

    def get(self, key: str) -> bytes:
        """The bytes under ``key``, verified against the recorded checksum."""
        path = self._path(key)
        for attempt in range(2):
            self._invalidate(path)
            try:
                _, accepted = self._accepted(path)
                data = self._read_raw(path)
            except KeyError:
                raise KeyError(key) from None
            actual = "sha256:" + _sha256_hex(data)
            if not accepted or actual in accepted:
                return data
            if attempt == 0 and self._s3:
                continue  # a concurrent overwrite between HEAD and GET: look again
            self._check(key, path, actual, accepted)
        raise AssertionError("unreachable")  # pragma: no cover

    def exists(self, key: str) -> bool:
        path = self._path(key)
        self._invalidate(path)
        return self._is_file(path)

    def delete(self, key: str) -> None:
        path = self._path(key)
        self._invalidate(path)
        if not self._is_file(path):
            raise KeyError(key)
        self.fs.rm_file(path)
        if self._sidecars:
            try:
                self.fs.rm_file(self._sidecar(path))
            except FileNotFoundError:
                pass
        self._invalidate(path)

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (a plain string prefix), sorted."""
        if prefix:
            if "\\" in prefix or prefix.startswith("/") or ".." in prefix.split("/"):
                raise ValueError(
                    f"invalid key prefix {prefix!r}: use a relative '/'-separated prefix"
                )
        base_dir = prefix.rpartition("/")[0]
        start = self._path(base_dir) if base_dir else self.root
        self._invalidate(self.root or None)
        try:
            found = self.fs.find(start) if start else self.fs.find("")
        except FileNotFoundError:
            return []
        strip = (self.root.rstrip("/") + "/") if self.root else ""
        keys = []
        for p in found:
            p = str(p)
            if self._local:
                p = p.replace(os.sep, "/")
            if strip and not p.startswith(strip):
                continue
            rel = p[len(strip) :]
            base = rel.rsplit("/", 1)[-1]
            if _SIDECAR_RE.match(base) or _TMP_RE.match(base):
                continue
            if rel.startswith(prefix):
                keys.append(rel)
        return sorted(keys)

    def info(self, key: str) -> BlobInfo:
        """Size and recorded checksum of ``key`` (hashes the data only if none is recorded)."""
        path = self._path(key)
        self._invalidate(path)
        if self._s3:
            head = self._s3_head(path)
            if head is None:
                raise KeyError(key)
            recorded, accepted = self._accepted(path, head)
            size = int(head["ContentLength"])
        else:
            try:
                entry = self.fs.info(path)
            except FileNotFoundError:
                raise KeyError(key) from None
            if entry.get("type") != "file":
                raise KeyError(key)
            recorded, accepted = self._accepted(path)
            size = int(entry["size"])
        if recorded is None:
            with self.fs.open(path, "rb") as fh:
                recorded, size = _hash_stream(fh)
            self._check(key, path, recorded, accepted)
        return BlobInfo(key=key, size=size, checksum=recorded)

    # -- files and streams ---------------------------------------------------------
    def put_file(self, key: str, local_path: str | os.PathLike[str]) -> BlobInfo:
        """Upload a local file (streamed, never held in memory whole) under ``key``."""
        path = self._path(key)
        src = Path(local_path)
        with open(src, "rb") as fh:
            checksum, size = _hash_stream(fh)

        def write() -> None:
            if self._local:
                _atomic_copy(src, Path(path))
            elif self._s3:
                self.fs.put_file(str(src), path, Metadata={_META_KEY: checksum.split(":", 1)[1]})
            else:
                parent, _ = self._split(path)
                if parent:
                    self.fs.makedirs(parent, exist_ok=True)
                self.fs.put_file(str(src), path)

        self._commit(path, checksum, size, write)
        return BlobInfo(key=key, size=size, checksum=checksum)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> BlobInfo:
        """Download ``key`` to ``local_path`` atomically, verifying the checksum first."""
        path = self._path(key)
        dest = Path(local_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._invalidate(path)
        try:
            _, accepted = self._accepted(path)
        except KeyError:
            raise KeyError(key) from None
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            h = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                try:
                    src = self.fs.open(path, "rb")
                except FileNotFoundError:
                    raise KeyError(key) from None
                with src:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            actual = "sha256:" + h.hexdigest()
            self._check(key, path, actual, accepted)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return BlobInfo(key=key, size=size, checksum=actual)

    def open(self, key: str, mode: str = "rb") -> io.RawIOBase:
        """A binary stream. ``"rb"`` verifies the checksum when the stream reaches its end;
        ``"wb"`` spools locally and commits (atomically, with a checksum) on ``close()``.
        """
        if mode == "rb":
            path = self._path(key)
            self._invalidate(path)
            try:
                _, accepted = self._accepted(path)
                fh = self.fs.open(path, "rb")
            except (KeyError, FileNotFoundError):
                raise KeyError(key) from None
            return _VerifyingReader(fh, lambda actual: self._check(key, path, actual, accepted))
        if mode == "wb":
            self._path(key)  # validate now, not at close
            return _SpoolWriter(lambda tmp: self.put_file(key, tmp))
        raise ValueError(f"unsupported mode {mode!r}; use 'rb' or 'wb'")

    def __repr__(self) -> str:
        return f"FsspecBlobStore({self.url!r})"


def _atomic_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _VerifyingReader(io.RawIOBase):
    """Hashes what is read and calls ``verify(actual)`` once the end is reached."""

    def __init__(self, fh: Any, verify: Any) -> None:
        self._fh = fh
        self._verify = verify
        self._hash = hashlib.sha256()
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._fh.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if n:
            self._hash.update(data)
        elif not self._done:
            self._done = True
            self._verify("sha256:" + self._hash.hexdigest())
        return n

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            super().close()


class _SpoolWriter(io.RawIOBase):
    """Collects writes in a temporary file; ``close()`` hands it to ``commit``."""

    def __init__(self, commit: Any) -> None:
        self._commit = commit
        fd, self._tmp = tempfile.mkstemp(prefix=".kitchen-blob.", suffix=".tmp")
        self._fh = os.fdopen(fd, "wb")
        self._aborted = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._fh.write(data)

    def abort(self) -> None:
        """Discard what was written; nothing is stored."""
        self._aborted = True
        self.close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._aborted = True
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._fh.close()
            if not self._aborted:
                self._commit(self._tmp)
        finally:
            Path(self._tmp).unlink(missing_ok=True)
            super().close()

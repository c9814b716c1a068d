"""``NoopBlobStore``: a dict of bytes with the BlobStore port's key rules and checksums."""

from __future__ import annotations

import hashlib
from typing import Any

from kitchen.ports.blob import BlobInfo


def validate_key(key: str) -> str:
    """Keys are relative, ``/``-separated and never contain ``..`` segments."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"blob key {key!r} must be a non-empty string")
    if key.startswith(("/", "\\")) or (len(key) > 1 and key[1] == ":"):
        raise ValueError(f"blob key {key!r} must be relative, not an absolute path")
    parts = key.replace("\\", "/").split("/")
    if any(p == ".." for p in parts):
        raise ValueError(f"blob key {key!r} must not contain '..' segments")
    if any(p in ("", ".") for p in parts):
        raise ValueError(f"blob key {key!r} has an empty or '.' segment")
    return key


def checksum(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class NoopBlobStore:
    """In-memory BlobStore (per instance)."""

    def __init__(self) -> None:
        self._blobs: dict[str, tuple[bytes, BlobInfo]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def put(self, key: str, data: bytes) -> BlobInfo:
        validate_key(key)
        data = bytes(data)
        self.calls.append(("put", {"key": key, "size": len(data)}))
        info = BlobInfo(key, len(data), checksum(data))
        self._blobs[key] = (data, info)
        return info

    def _entry(self, key: str) -> tuple[bytes, BlobInfo]:
        validate_key(key)
        try:
            return self._blobs[key]
        except KeyError:
            raise KeyError(f"no blob under key {key!r}") from None

    def get(self, key: str) -> bytes:
        self.calls.append(("get", {"key": key}))
        return self._entry(key)[0]

    def exists(self, key: str) -> bool:
        validate_key(key)
        return key in self._blobs

    def delete(self, key: str) -> None:
        self.calls.append(("delete", {"key": key}))
        self._entry(key)
        del self._blobs[key]

    def list(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._blobs if k.startswith(prefix))

    def info(self, key: str) -> BlobInfo:
        return self._entry(key)[1]

"""The blob port: bytes under keys, with checksums."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    #: ``sha256:<hex>`` of the stored bytes.
    checksum: str


@runtime_checkable
class BlobStore(Protocol):
    """A flat namespace of byte blobs. Keys are relative, ``/``-separated, never ``..``."""

    def put(self, key: str, data: bytes) -> BlobInfo:
        """Store ``data`` atomically under ``key`` (replacing any previous value)."""
        ...

    def get(self, key: str) -> bytes:
        """Return the bytes under ``key``; ``KeyError`` when absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; ``KeyError`` when absent."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        ...

    def info(self, key: str) -> BlobInfo: ...

"""BlobStore adapters: :class:`FsspecBlobStore` for local paths, ``memory://``, ``s3://``
and any other fsspec protocol (see ``docs/storage.md``)."""

from __future__ import annotations

from kitchen.adapters.blob.fsspec_store import BlobChecksumError, FsspecBlobStore, validate_key

__all__ = ["BlobChecksumError", "FsspecBlobStore", "validate_key"]

"""``NoopHubClient``: model/dataset repositories kept in memory."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kitchen.io import atomic_write_bytes
from kitchen.ports.hub import RepoType


class NoopHubClient:
    """``upload`` copies a folder's files into memory; ``download`` writes them out again.

    ``root``: where downloads are materialised (``<root>/<repo_type>/<repo_id>/<revision>``);
    a fresh temporary directory per client when ``None``.
    """

    def __init__(self, root: str | None = None) -> None:
        self.root = root
        self._repos: dict[tuple[str, str], list[tuple[str, dict[str, bytes]]]] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _root(self) -> Path:
        if self.root is not None:
            return Path(self.root)
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kitchen-noop-hub-")
        return Path(self._tmp.name)

    def upload(
        self,
        folder: str,
        repo_id: str,
        *,
        repo_type: RepoType = "model",
        commit_message: str = "Upload from kitchen",
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        src = Path(folder)
        if not src.is_dir():
            raise FileNotFoundError(f"upload folder {folder!r} does not exist")
        files = {
            p.relative_to(src).as_posix(): p.read_bytes()
            for p in sorted(src.rglob("*"))
            if p.is_file()
        }
        digest = hashlib.sha256()
        for rel, data in files.items():
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        revision = digest.hexdigest()[:12]
        self._repos.setdefault((repo_type, repo_id), []).append((revision, files))
        self.calls.append(
            ("upload", {"repo_id": repo_id, "repo_type": repo_type, "files": len(files)})
        )
        return revision

    def download(
        self, repo_id: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> str:
        self.calls.append(("download", {"repo_id": repo_id, "revision": revision}))
        history = self._repos.get((repo_type, repo_id))
        if not history:
            raise FileNotFoundError(f"no {repo_type} repo {repo_id!r} in the noop hub")
        if revision is None:
            rev, files = history[-1]
        else:
            match = [h for h in history if h[0] == revision]
            if not match:
                raise FileNotFoundError(
                    f"{repo_type} repo {repo_id!r} has no revision {revision!r}"
                )
            rev, files = match[-1]
        out = self._root() / repo_type / repo_id / rev
        for rel, data in files.items():
            atomic_write_bytes(out / rel, data)
        return str(out)

    def exists(self, repo_id: str, *, repo_type: RepoType = "model") -> bool:
        return bool(self._repos.get((repo_type, repo_id)))

"""A :class:`~kitchen.ports.HubClient` on ``huggingface_hub``, with local-folder repositories.

Three ways to name a repository:

- **Hub repository** (``org/name``): ``download`` is ``snapshot_download`` into the HF cache;
  ``upload`` is ``HfApi.create_repo(exist_ok=True)`` + one ``HfApi.create_commit`` holding
  the folder and the generated ``README.md`` (the same operations ``upload_folder`` builds,
  in a single commit so the card and the weights appear together).
- **Local directory**: a ``repo_id`` that is an existing directory is returned as is by
  ``download`` - handy for models already on disk.
- **Local-folder hub** (``HfHubClient(local_root=DIR)`` or ``local_root="file:///DIR"``):
  ``DIR/<repo_id>`` is the repository (datasets under ``DIR/datasets/<repo_id>``).
  ``upload`` copies into a temporary sibling directory and renames it into place, so a
  reader sees the old or the new repository, never a half-copied one. No network and no
  ``huggingface_hub`` needed - for tests and air-gapped teams.

**Offline.** ``offline=None`` (the default) follows ``HF_HUB_OFFLINE`` *at call time*; when
offline, ``download`` only returns cached snapshots (``local_files_only=True``) and a repo
that is not cached raises :class:`~kitchen.errors.UsageError` naming the repository, the
cache directory and how to fix it. Uploading to the Hub while offline is refused.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from kitchen.errors import AdapterUnavailable, KitchenError, UsageError
from kitchen.io import atomic_write_text
from kitchen.ports.hub import RepoType

__all__ = ["HfHubClient", "is_offline"]

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_HINT = "pip install 'kitchen[hub]' (huggingface_hub)"


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set in the environment now."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hf() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise AdapterUnavailable(
            f"the Hugging Face hub client needs huggingface_hub; install it with: {_HINT}"
        ) from None
    return huggingface_hub


def _check_repo_id(repo_id: str) -> str:
    parts = repo_id.split("/")
    if (
        not repo_id
        or len(parts) > 2
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in repo_id
        or repo_id.startswith("/")
    ):
        raise UsageError(
            f"invalid repository id {repo_id!r}: use 'name' or 'owner/name' "
            "(letters, digits, '-', '_', '.')"
        )
    return repo_id


class HfHubClient:
    """Downloads and publishes model/dataset repositories (Hub, cache or local folders)."""

    def __init__(
        self,
        *,
        local_root: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | None = None,
        endpoint: str | None = None,
        offline: bool | None = None,
        private: bool = False,
    ) -> None:
        self.local_root = _as_local_path(local_root) if local_root is not None else None
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        self.token = token
        self.endpoint = endpoint
        self._offline = offline
        self.private = private

    @property
    def offline(self) -> bool:
        return self._offline if self._offline is not None else is_offline()

    # -- local-folder hub ----------------------------------------------------------
    def local_path(self, repo_id: str, repo_type: RepoType = "model") -> Path:
        """Where ``repo_id`` lives under ``local_root``."""
        if self.local_root is None:
            raise UsageError("this HfHubClient has no local_root")
        _check_repo_id(repo_id)
        base = self.local_root / "datasets" if repo_type == "dataset" else self.local_root
        return base / repo_id

    # -- the HubClient port --------------------------------------------------------
    def download(
        self, repo_id: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> str:
        """A local directory holding ``repo_id`` at ``revision`` (cached or downloaded)."""
        if self.local_root is not None:
            path = self.local_path(repo_id, repo_type)
            if revision not in (None, "main"):
                raise UsageError(
                    f"local-folder repository {repo_id!r} has no revisions; "
                    f"drop revision={revision!r}"
                )
            if not path.is_dir():
                raise UsageError(
                    f"{repo_type} repository {repo_id!r} is not in the local hub {self.local_root} "
                    f"(expected the directory {path}); upload it there or fix the id"
                )
            return str(path)
        if _looks_like_path(repo_id):
            path = _as_local_path(repo_id)
            if not path.is_dir():
                raise UsageError(f"{repo_id} is not a directory; pass an existing model folder")
            return str(path.resolve())
        hf = _hf()
        offline = self.offline
        try:
            return str(
                hf.snapshot_download(
                    _check_repo_id(repo_id),
                    repo_type=repo_type,
                    revision=revision,
                    cache_dir=self.cache_dir,
                    token=self.token,
                    endpoint=self.endpoint,
                    local_files_only=offline,
                    library_name="kitchen",
                )
            )
        except hf.errors.LocalEntryNotFoundError as exc:
            where = self.cache_dir or hf.constants.HF_HUB_CACHE
            rev = revision or "main"
            if offline:
                raise UsageError(
                    f"{repo_type} repository {repo_id!r} (revision {rev}) is not in the HF "
                    f"cache {where} and offline mode is on (HF_HUB_OFFLINE); download it once "
                    f"with network access (`hf download {repo_id}`) or unset HF_HUB_OFFLINE"
                ) from None
            raise KitchenError(
                f"could not reach the Hub for {repo_type} repository {repo_id!r} (revision "
                f"{rev}) and it is not in the HF cache {where}: {_first_line(exc)}; check the "
                "network, HF_ENDPOINT and HF_TOKEN, or pre-fill the cache"
            ) from None
        except (hf.errors.RepositoryNotFoundError, hf.errors.RevisionNotFoundError) as exc:
            raise UsageError(
                f"{repo_type} repository {repo_id!r} (revision {revision or 'main'}) was not "
                f"found on the Hub: {_first_line(exc)}; check the id, the revision and HF_TOKEN "
                "for private or gated repositories"
            ) from None

    def exists(self, repo_id: str, *, repo_type: RepoType = "model") -> bool:
        if self.local_root is not None:
            return self.local_path(repo_id, repo_type).is_dir()
        if _looks_like_path(repo_id):
            return _as_local_path(repo_id).is_dir()
        hf = _hf()
        if self.offline:
            try:
                hf.snapshot_download(
                    _check_repo_id(repo_id),
                    repo_type=repo_type,
                    cache_dir=self.cache_dir,
                    local_files_only=True,
                )
            except hf.errors.LocalEntryNotFoundError:
                return False
            return True
        api = hf.HfApi(endpoint=self.endpoint, token=self.token, library_name="kitchen")
        return bool(api.repo_exists(_check_repo_id(repo_id), repo_type=repo_type))

    def upload(
        self,
        folder: str,
        repo_id: str,
        *,
        repo_type: RepoType = "model",
        commit_message: str = "Upload from kitchen",
        metadata: Mapping[str, str] | None = None,
        card: str | None = None,
        extra_folders: Mapping[str, str | os.PathLike[str]] | None = None,
        private: bool | None = None,
        revision: str | None = None,
    ) -> str:
        """Publish ``folder`` as ``repo_id`` and return the commit URL (or ``file://`` URL).

        ``card`` is the ``README.md`` to publish with it (see
        :func:`~kitchen.adapters.hub.card.render_model_card`); without one, ``metadata`` (if
        given) becomes the front-matter of a minimal card, else the folder's own README.md
        (if any) is kept. ``extra_folders`` maps a path inside the repository to another
        local folder to include (e.g. ``{"merged": merged_dir}``).
        """
        src = Path(folder)
        if not src.is_dir():
            raise UsageError(f"cannot upload {folder}: not a directory")
        extras = {k.strip("/"): Path(v) for k, v in (extra_folders or {}).items()}
        for sub, path in extras.items():
            if not path.is_dir():
                raise UsageError(f"cannot upload {path} as {sub}/: not a directory")
            if not sub or ".." in sub.split("/"):
                raise UsageError(f"invalid path in repository {sub!r}")
        if card is None and metadata:
            card = _minimal_card(repo_id, metadata)
        if self.local_root is not None:
            return self._upload_local(src, repo_id, repo_type, card, extras)
        return self._upload_hub(
            src,
            repo_id,
            repo_type,
            commit_message,
            card,
            extras,
            self.private if private is None else private,
            revision,
        )

    # -- implementations -------------------------------------------------------------
    def _upload_local(
        self,
        src: Path,
        repo_id: str,
        repo_type: RepoType,
        card: str | None,
        extras: Mapping[str, Path],
    ) -> str:
        dest = self.local_path(repo_id, repo_type)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tag = secrets.token_hex(4)
        tmp = dest.parent / f".{dest.name}.tmp-{tag}"
        old = dest.parent / f".{dest.name}.old-{tag}"
        try:
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(".git"))
            for sub, path in extras.items():
                shutil.copytree(path, tmp / sub, dirs_exist_ok=True)
            if card is not None:
                atomic_write_text(tmp / "README.md", card)
            _fsync_tree(tmp)
            if dest.exists():
                os.replace(dest, old)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not dest.exists():
                os.replace(old, dest)  # put the previous repository back
            raise
        shutil.rmtree(old, ignore_errors=True)
        return dest.resolve().as_uri()

    def _upload_hub(
        self,
        src: Path,
        repo_id: str,
        repo_type: RepoType,
        commit_message: str,
        card: str | None,
        extras: Mapping[str, Path],
        private: bool,
        revision: str | None,
    ) -> str:
        if self.offline:
            raise UsageError(
                f"cannot upload {repo_id!r}: offline mode is on (HF_HUB_OFFLINE); unset it, "
                "or publish to a local-folder hub with --hub-root DIR"
            )
        hf = _hf()
        _check_repo_id(repo_id)
        api = hf.HfApi(endpoint=self.endpoint, token=self.token, library_name="kitchen")
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        ops: list[Any] = []
        for prefix, root in [("", src), *extras.items()]:
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                if not path.is_file() or ".git" in rel.parts:
                    continue
                in_repo = f"{prefix}/{rel.as_posix()}" if prefix else rel.as_posix()
                if card is not None and in_repo == "README.md":
                    continue
                ops.append(hf.CommitOperationAdd(path_in_repo=in_repo, path_or_fileobj=str(path)))
        if card is not None:
            ops.append(
                hf.CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode())
            )
        info = api.create_commit(
            repo_id,
            operations=ops,
            commit_message=commit_message,
            repo_type=repo_type,
            revision=revision,
        )
        return str(getattr(info, "commit_url", None) or getattr(info, "repo_url", repo_id))

    def __repr__(self) -> str:
        where = f"local_root={str(self.local_root)!r}" if self.local_root else "hub"
        return f"HfHubClient({where})"


def _as_local_path(root: str | os.PathLike[str]) -> Path:
    text = os.fspath(root)
    if text.startswith("file://"):
        parsed = urlparse(text)
        return Path(unquote(parsed.path))
    if "://" in text:
        raise UsageError(f"local_root must be a directory or a file:// URL, not {text!r}")
    return Path(text).expanduser()


def _looks_like_path(repo_id: str) -> bool:
    """A repo id that names a local directory rather than a Hub repository."""
    if repo_id.startswith(("/", "./", "../", "~", "file://")) or os.sep in repo_id.replace("/", ""):
        return True
    return Path(repo_id).is_dir()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _minimal_card(repo_id: str, metadata: Mapping[str, str]) -> str:
    import yaml

    front = {"library_name": "kitchen", "tags": ["kitchen"], **dict(metadata)}
    title = repo_id.rsplit("/", 1)[-1]
    return f"---\n{yaml.safe_dump(front, sort_keys=False).rstrip()}\n---\n\n# {title}\n"


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

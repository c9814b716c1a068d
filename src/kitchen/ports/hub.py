"""The model hub port (huggingface_hub-shaped)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

RepoType = Literal["model", "dataset"]


@runtime_checkable
class HubClient(Protocol):
    """Fetches and publishes model/dataset repositories."""

    def download(
        self, repo_id: str, *, repo_type: RepoType = "model", revision: str | None = None
    ) -> str:
        """Materialise a repository snapshot locally and return its directory."""
        ...

    def upload(
        self,
        folder: str,
        repo_id: str,
        *,
        repo_type: RepoType = "model",
        commit_message: str = "Upload from kitchen",
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Publish ``folder`` to ``repo_id`` and return the revision/URL."""
        ...

    def exists(self, repo_id: str, *, repo_type: RepoType = "model") -> bool: ...

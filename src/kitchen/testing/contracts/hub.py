"""Contract tests for :class:`kitchen.ports.HubClient`.

Abstract fixture: ``hub`` (a HubClient against an empty namespace).
Optional: ``repo_id`` (a repository the test may create).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kitchen.ports import HubClient

FILES = {"README.md": b"# test repo\n", "weights/adapter.bin": bytes(range(256)) * 4}


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


class HubClientContract:
    @pytest.fixture
    def hub(self, tmp_path: Any) -> HubClient:
        raise NotImplementedError("the concrete suite must provide `hub`")

    @pytest.fixture
    def repo_id(self) -> str:
        return "kitchen-contract/test-repo"

    def test_upload_then_download_round_trips(
        self, hub: HubClient, repo_id: str, tmp_path: Path
    ) -> None:
        src = tmp_path / "src"
        for rel, data in FILES.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(data)
        assert not hub.exists(repo_id)
        rev = hub.upload(str(src), repo_id, commit_message="contract test")
        assert isinstance(rev, str)
        assert hub.exists(repo_id)
        out = Path(hub.download(repo_id))
        assert out.is_dir()
        assert _tree(out) == FILES

    def test_download_missing_repo_fails(self, hub: HubClient) -> None:
        with pytest.raises(Exception):  # noqa: B017 - adapters differ in the error type
            hub.download("kitchen-contract/never-uploaded")

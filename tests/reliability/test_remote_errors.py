"""`--adapters remote` misconfigured: no key, a wrong key, a dead or malformed URL. Each
fails within seconds (no SDK retry loop) with exit 2 and one line naming the URL and fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tinker")

from tests.reliability.cli import assert_clean_failure, invoke
from tests.remote.server import Server


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str | None, key: str | None):
    for name, value in (("TINKER_BASE_URL", url), ("TINKER_API_KEY", key)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return invoke(["run", "sft", "--adapters", "remote", "--run-dir", str(tmp_path / "r"),
                   "--no-progress"])  # fmt: skip


def test_unreachable_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_dead_port()}"
    result = _run(tmp_path, monkeypatch, url, "tml-0123456789abcdef")
    assert_clean_failure(result, url, "cannot reach", "TINKER_BASE_URL")


def test_no_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(tmp_path, monkeypatch, f"http://127.0.0.1:{_dead_port()}", None)
    assert_clean_failure(result, "TINKER_API_KEY", "no Tinker API key")


@pytest.mark.parametrize("url", ["ftp://example.invalid/x", "not a url"])
def test_malformed_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    result = _run(tmp_path, monkeypatch, url, "tml-0123456789abcdef")
    assert_clean_failure(result, "TINKER_BASE_URL")


def test_wrong_api_key_against_a_real_server(tmp_path: Path) -> None:
    """End to end: a real `kitchen serve` and a real `kitchen run` subprocess."""
    server = Server(tmp_path / "data").start()
    try:
        env = {**os.environ, "TINKER_BASE_URL": server.url, "TINKER_API_KEY": "tml-wrong-key-123"}
        out = subprocess.run(
            [sys.executable, "-m", "kitchen", "run", "sft", "--adapters", "remote",
             "--run-dir", str(tmp_path / "r"), "--no-progress"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
    finally:
        server.stop()
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "refused the API key" in lines[0] and server.url in lines[0]

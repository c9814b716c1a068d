"""Start ``kitchen serve`` as a real subprocess on a free loopback port (test helper)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TOKEN = "tml-kitchen-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend_args() -> list[str]:
    """Server arguments for the noop backend (a real, tiny, deterministic model)."""
    return [
        "--backend",
        "noop",
        "--model-name",
        "noop-tiny",
        "--model-spec",
        '{"vocab_size": 64}',
    ]


class Server:
    def __init__(
        self,
        data_dir: Path,
        args: list[str] | None = None,
        port: int | None = None,
        token: str = TOKEN,
    ) -> None:
        self.data_dir = data_dir
        self.args = list(args) if args is not None else backend_args()
        self.port = port or free_port()
        self.token = token
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        cmd = [
            sys.executable,
            "-m",
            "kitchen",
            "serve",
            "--port",
            str(self.port),
            "--token",
            self.token,
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT
        )
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kitchen serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kitchen serve did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """``kill -9``: no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

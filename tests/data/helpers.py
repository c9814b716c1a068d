"""Local stand-ins for the tests: a put-counting directory BlobStore, a canned teacher, a
local git repository and an http.server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kitchen.adapters.blob import FsspecBlobStore
from kitchen.ports.blob import BlobInfo
from kitchen.ports.futures import KFuture, resolved
from kitchen.ports.tokenizer import TokenizerClient
from kitchen.ports.types import ModelInput, SampledSequence, SampleResponse, SamplingParams


class DirBlobStore(FsspecBlobStore):
    """The fsspec BlobStore on a directory, counting puts so tests can prove idempotence."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(str(root))
        self.puts: list[str] = []

    def put(self, key: str, data: bytes) -> BlobInfo:
        info = super().put(key, data)
        self.puts.append(key)
        return info


class CannedTeacher:
    """A SamplingClient that 'explains' the first def/class/heading in the prompt."""

    model_name = "canned-teacher"

    def __init__(self, tok: TokenizerClient) -> None:
        self.tok = tok
        self.calls = 0
        self._lock = threading.Lock()

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> KFuture[SampleResponse]:
        with self._lock:
            self.calls += 1
        text = self.tok.decode(prompt.to_ints())
        m = re.search(r"def (\w+)", text)
        answer = f"`{m.group(1)}` is a function of this module." if m else "It documents the API."
        toks = tuple(self.tok.encode(answer))
        if sampling_params.max_tokens:
            toks = toks[: sampling_params.max_tokens]
        return resolved(
            SampleResponse(tuple(SampledSequence("stop", toks) for _ in range(num_samples)))
        )

    def compute_logprobs(self, prompt: ModelInput) -> KFuture[list[float | None]]:
        return resolved([None] * prompt.length)


def git(cwd: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
    )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_git_repo(path: Path, files: dict[str, str]) -> str:
    """Create a repository with one commit of ``files``; returns the commit id."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    for rel, text in files.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "corpus")
    return git(path, "rev-parse", "HEAD")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    fail_first: int = 0
    hits: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_error(503, "busy")
            return
        super().do_GET()


@contextmanager
def http_server(directory: Path, fail_first: int = 0) -> Iterator[tuple[str, list[str]]]:
    """Serve ``directory`` on 127.0.0.1; yields (base url, request paths seen)."""
    hits: list[str] = []
    handler = type("H", (_Quiet,), {"fail_first": fail_first, "hits": hits})
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    finally:
        srv.shutdown()
        srv.server_close()

"""`kitchen serve` refuses bad arguments at start (exit 2, one line), and a real server keeps
serving after malformed requests."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("tinker")

from tests.reliability.cli import assert_clean_failure, invoke
from tests.remote.server import Server

BASE = ["serve", "--token", "tml-abcdefghijk", "--backend", "noop"]


@pytest.fixture
def busy_port() -> object:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def test_port_in_use(busy_port: int, tmp_path: Path) -> None:
    r = invoke([*BASE, "--port", str(busy_port), "--data-dir", str(tmp_path / "d")])
    assert_clean_failure(r, f"port {busy_port}", "in use")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--port", "70000"], "--port"),
        (["--port", "0x"], "--port"),
        (["--host", "no such host!"], "--host"),
        (["--model-spec", "missing.json"], "missing.json"),
        (["--model-spec", "{not json"], "--model-spec"),
        (["--model-spec", '{"vocab_size": -3}'], "vocab_size"),
        (["--backend", "nosuch_mod_xyz:factory"], "nosuch_mod_xyz"),
        (["--backend", "json:dumps"], "factory failed"),
        (["--backend", "os:sep"], "not callable"),
        (["--max-body-mb", "-1"], "--max-body-mb"),
        (["--max-num-samples", "0"], "--max-num-samples"),
        (["--backend", "hf", "--model", "/no/such/model"], "/no/such/model"),
        (["--backend", "hf", "--model-spec", '{"mode": "huh"}'], "mode"),
    ],
)
def test_bad_serve_arguments(args: list[str], needle: str, tmp_path: Path) -> None:
    if "hf" in args:
        pytest.importorskip("transformers")
    r = invoke([*BASE, "--data-dir", str(tmp_path / "d"), *args])
    assert_clean_failure(r, needle)


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("keep me")
    assert_clean_failure(invoke([*BASE, "--data-dir", str(f)]), str(f), "is a file")
    assert f.read_text() == "keep me"


def test_model_spec_that_is_a_directory_or_fifo(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for spec in (str(tmp_path), str(fifo)):
        r = invoke([*BASE, "--data-dir", str(tmp_path / "d"), "--model-spec", spec])
        assert_clean_failure(r, spec)


def test_real_server_keeps_serving_after_bad_requests(tmp_path: Path) -> None:
    import httpx

    server = Server(tmp_path / "data").start()
    try:
        h = {"X-API-Key": server.token}
        bad = [
            ("/api/v1/asample", b'{"sampling_session_id": "x", "num_samples": 1e99}'),
            ("/api/v1/create_model", b'{"session_id": {"a": 1}}'),
            ("/api/v1/session_heartbeat", b"[" * 20000),
            ("/api/v1/optim_step", b"\xff\xfe\x00"),
        ]
        for route, body in bad:
            r = httpx.post(server.url + route, headers=h, content=body, timeout=10)
            assert 400 <= r.status_code < 500 and "detail" in r.json(), (route, r.text)
        r = httpx.post(
            server.url + "/api/v1/forward_backward",
            headers={**h, "content-type": "application/x-protobuf"},
            content=b"\x0a\x03abc\x22\x05" + b"\xff" * 5,
            timeout=10,
        )
        assert 400 <= r.status_code < 500, r.text
        assert httpx.get(server.url + "/api/v1/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        server.stop()

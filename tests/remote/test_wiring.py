"""Wiring and CLI registration of the remote adapter and ``kitchen serve`` (no network)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

pytest.importorskip("tinker")


def test_build_ports_opens_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    import tinker

    from kitchen.adapters.remote import wiring

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("build_ports must not connect")

    monkeypatch.setattr(tinker, "ServiceClient", boom)
    monkeypatch.setattr(tinker, "RestClient", boom)
    cfg = SimpleNamespace(
        model={
            "base_url": "http://127.0.0.1:9",
            "api_key": "tml-x",
            "base_model": "m",
            "lora_rank": 8,
        },
        seed=3,
    )
    ports = wiring.build_ports(cfg, None)
    assert ports.training is not None and ports.sampling is not None
    rc = ports.training.config  # type: ignore[attr-defined]
    assert (rc.base_url, rc.api_key, rc.base_model, rc.lora_rank, rc.seed) == (
        "http://127.0.0.1:9",
        "tml-x",
        "m",
        8,
        3,
    )


def test_config_falls_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from kitchen.adapters.remote.wiring import remote_config

    monkeypatch.setenv("TINKER_BASE_URL", "http://127.0.0.1:1234")
    monkeypatch.setenv("TINKER_API_KEY", "tml-from-env")
    rc = remote_config(SimpleNamespace(model={}, seed=None))
    assert (rc.base_url, rc.api_key, rc.lora_rank) == ("http://127.0.0.1:1234", "tml-from-env", 32)


def test_bad_api_key_is_a_config_error() -> None:
    from kitchen.adapters.remote.wiring import remote_config
    from kitchen.errors import ConfigError

    with pytest.raises(ConfigError, match="api_key"):
        remote_config(SimpleNamespace(model={"api_key": "secret"}, seed=None))


def test_serve_module_import_is_light() -> None:
    code = (
        "import sys, kitchen.cli.serve; "
        "bad = [m for m in ('torch', 'fastapi', 'uvicorn', 'tinker') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_serve_cli_refuses_bad_tokens() -> None:
    for token in ("no-prefix-token", "tml-x"):
        r = subprocess.run(
            [sys.executable, "-m", "kitchen", "serve", "--token", token, "--backend", "noop"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2, r.stderr
        assert "token" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "kitchen", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "--data-dir" in r.stdout

"""HfHubClient: local-folder hub, local directories, the HF cache offline, and model cards.

The real Hub is unreachable here, so the offline/cache and local paths run for real and the
Hub upload path is checked call by call against ``HfApi``'s real signatures.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from kitchen.adapters.hub import (
    HfHubClient,
    is_offline,
    parse_front_matter,
    render_model_card,
    summarize_metrics,
)
from kitchen.errors import KitchenError, UsageError
from kitchen.ports import HubClient
from kitchen.testing import HubClientContract

HISTORY = [
    {"step": 1, "loss": 2.0, "lr": 0.01},
    {"step": 2, "loss": 1.0, "eval_loss": 1.5},
    {"step": 3, "loss": 1.25, "note": "text", "bad": float("nan")},
]
CONFIG = {"dataset": "data/v3", "epochs": 2, "model": {"name": "Qwen/Qwen2.5-0.5B", "lora_r": 8}}


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class TestLocalFolderHubContract(HubClientContract):
    @pytest.fixture
    def hub(self, tmp_path: Path) -> HubClient:
        return HfHubClient(local_root=tmp_path / "hub")


# -- model cards ------------------------------------------------------------------------------
def test_summarize_metrics() -> None:
    s = summarize_metrics(HISTORY)
    assert s["loss"] == {"final": 1.25, "min": 1.0, "max": 2.0, "step": 3.0}
    assert s["eval_loss"] == {"final": 1.5, "min": 1.5, "max": 1.5, "step": 2.0}
    assert "note" not in s and "bad" not in s and "step" not in s
    assert list(s) == sorted(s)


def test_render_model_card_front_matter_and_body() -> None:
    card = render_model_card(
        "me/tiny-lora",
        base_model="Qwen/Qwen2.5-0.5B",
        recipe="sft",
        config=CONFIG,
        metrics=summarize_metrics(HISTORY),
        data_manifest_hash="ab" * 32,
        data_manifest_source="data/v3/manifest.json",
        run_id="sft-20250101-000000-abc123",
        adapters="hf",
        tags=["code", "kitchen"],
        kitchen_version="0.1.0",
    )
    meta, body = parse_front_matter(card)
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B"
    assert meta["library_name"] == "kitchen"
    assert meta["tags"] == ["kitchen", "sft", "peft", "lora", "code"]
    assert meta["kitchen"] == {
        "kind": "adapter",
        "recipe": "sft",
        "run_id": "sft-20250101-000000-abc123",
        "adapters": "hf",
        "data_manifest_sha256": "ab" * 32,
        "version": "0.1.0",
    }
    assert body.startswith("\n# tiny-lora\n")
    assert f"Data manifest sha256: `{'ab' * 32}` (`data/v3/manifest.json`)" in body
    assert "| loss | 1.25 | 1 | 2 | 3 |" in body
    assert "| eval_loss | 1.5 | 1.5 | 1.5 | 2 |" in body
    assert "- Recipe: `sft`" in body
    config_block = body.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert yaml.safe_load(config_block) == CONFIG
    assert 'PeftModel.from_pretrained(base, "me/tiny-lora")' in body


def test_model_card_parses_with_huggingface_hub() -> None:
    hf = pytest.importorskip("huggingface_hub")
    card = render_model_card("me/x", base_model="gpt2", recipe="sft", config={"a": 1})
    parsed = hf.ModelCard(card)
    assert parsed.data.base_model == "gpt2"
    assert parsed.data.library_name == "kitchen"
    assert "kitchen" in parsed.data.tags


def test_model_card_without_facts_invents_nothing() -> None:
    card = render_model_card("solo", kind="model")
    meta, body = parse_front_matter(card)
    assert "base_model" not in meta
    assert meta["tags"] == ["kitchen"]
    assert "Data manifest: not recorded" in body
    assert "No metrics recorded." in body
    assert "PeftModel" not in body
    assert parse_front_matter("no front matter") == ({}, "no front matter")


# -- local-folder hub ---------------------------------------------------------------------------
def test_local_upload_writes_card_and_extra_folders(tmp_path: Path) -> None:
    hub = HfHubClient(local_root=f"file://{tmp_path / 'hub'}")
    adapter = _folder(tmp_path / "adapter", {"adapter_model.safetensors": b"w", "README.md": b"x"})
    merged = _folder(tmp_path / "merged", {"model.safetensors": b"m", "config.json": b"{}"})
    card = render_model_card("team/demo", base_model="gpt2")
    url = hub.upload(str(adapter), "team/demo", card=card, extra_folders={"merged": merged})
    dest = tmp_path / "hub" / "team" / "demo"
    assert url == dest.resolve().as_uri()
    assert _tree(dest) == {
        "README.md": card.encode(),
        "adapter_model.safetensors": b"w",
        "merged/config.json": b"{}",
        "merged/model.safetensors": b"m",
    }
    assert hub.download("team/demo") == str(dest)
    assert hub.exists("team/demo") and not hub.exists("team/other")
    assert not hub.exists("team/demo", repo_type="dataset")


def test_local_reupload_replaces_whole_repo(tmp_path: Path) -> None:
    hub = HfHubClient(local_root=tmp_path / "hub")
    hub.upload(str(_folder(tmp_path / "v1", {"old.bin": b"1", "keep.txt": b"a"})), "r")
    hub.upload(str(_folder(tmp_path / "v2", {"keep.txt": b"b"})), "r")
    assert _tree(tmp_path / "hub" / "r") == {"keep.txt": b"b"}
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["r"]  # no temp leftovers


def test_local_upload_failure_keeps_previous_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = HfHubClient(local_root=tmp_path / "hub")
    hub.upload(str(_folder(tmp_path / "v1", {"w.bin": b"v1"})), "org/r")
    real_copytree = shutil.copytree

    def copy_then_fail(src: Any, dst: Any, *a: Any, **kw: Any) -> Any:
        real_copytree(src, dst, *a, **kw)
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copytree", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        hub.upload(str(_folder(tmp_path / "v2", {"w.bin": b"v2"})), "org/r")
    assert _tree(tmp_path / "hub" / "org" / "r") == {"w.bin": b"v1"}
    assert [p.name for p in (tmp_path / "hub" / "org").iterdir()] == ["r"]


def test_local_upload_metadata_makes_a_minimal_card(tmp_path: Path) -> None:
    hub = HfHubClient(local_root=tmp_path / "hub")
    src = _folder(tmp_path / "src", {"a.bin": b"a"})
    hub.upload(str(src), "d", repo_type="dataset", metadata={"license": "mit"})
    meta, body = parse_front_matter((tmp_path / "hub" / "datasets" / "d" / "README.md").read_text())
    assert meta == {"library_name": "kitchen", "tags": ["kitchen"], "license": "mit"}
    assert "# d" in body
    assert hub.exists("d", repo_type="dataset")


def test_local_errors_are_clear(tmp_path: Path) -> None:
    hub = HfHubClient(local_root=tmp_path / "hub")
    with pytest.raises(UsageError, match=r"'org/missing' is not in the local hub"):
        hub.download("org/missing")
    hub.upload(str(_folder(tmp_path / "s", {"a": b"a"})), "org/r")
    with pytest.raises(UsageError, match="no revisions"):
        hub.download("org/r", revision="v2")
    for bad in ["../x", "a/b/c", "/abs", "a//b"]:
        with pytest.raises(UsageError, match="invalid repository id"):
            hub.upload(str(tmp_path / "s"), bad)
    with pytest.raises(UsageError, match="not a directory"):
        hub.upload(str(tmp_path / "nope"), "org/r")
    with pytest.raises(UsageError, match="file:// URL"):
        HfHubClient(local_root="s3://bucket/hub")


def test_existing_directory_is_a_repository(tmp_path: Path) -> None:
    model = _folder(tmp_path / "models" / "tiny", {"config.json": b"{}"})
    hub = HfHubClient()
    assert hub.download(str(model)) == str(model.resolve())
    assert hub.download(model.as_uri()) == str(model)
    assert hub.exists(str(model))
    assert not hub.exists(str(tmp_path / "models" / "absent"))
    with pytest.raises(UsageError, match="not a directory"):
        hub.download(str(tmp_path / "models" / "absent"))


# -- the HF cache and offline mode -----------------------------------------------------------
def _fake_cache(cache: Path, repo_id: str, files: dict[str, bytes], kind: str = "models") -> Path:
    """An HF cache entry laid out as huggingface_hub writes it (refs/main -> snapshot)."""
    repo = cache / f"{kind}--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return _folder(repo / "snapshots" / commit, files)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    pytest.importorskip("huggingface_hub")
    return tmp_path / "hf-cache"


def test_offline_env_serves_the_cache_only(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = _fake_cache(cache, "org/tiny", {"config.json": b"{}"})
    _fake_cache(cache, "org/data", {"train.jsonl": b"{}\n"}, kind="datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = HfHubClient(cache_dir=cache)
    assert is_offline() and hub.offline
    assert hub.download("org/tiny") == str(snap)
    assert Path(hub.download("org/data", repo_type="dataset"), "train.jsonl").is_file()
    assert hub.exists("org/tiny") and not hub.exists("org/absent")
    with pytest.raises(UsageError) as err:
        hub.download("org/absent")
    msg = str(err.value)
    assert "'org/absent'" in msg and "HF_HUB_OFFLINE" in msg and str(cache) in msg
    with pytest.raises(UsageError, match="offline mode is on"):
        hub.upload(str(snap), "org/tiny")


def test_offline_flag_overrides_env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not HfHubClient().offline
    assert HfHubClient(offline=True).offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not HfHubClient(offline=False).offline


def test_unreachable_hub_falls_back_to_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    snap = _fake_cache(cache, "org/tiny", {"config.json": b"{}"})
    hub = HfHubClient(cache_dir=cache, endpoint="http://127.0.0.1:9", offline=False)
    assert hub.download("org/tiny") == str(snap)
    with pytest.raises(KitchenError, match=r"could not reach the Hub .* 'org/absent'"):
        hub.download("org/absent")


# -- the Hub upload path, against HfApi's real signatures -----------------------------------------
class _RecordingApi:
    """Stands in for HfApi: records calls after binding them to HfApi's real signatures."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        from huggingface_hub.hf_api import HfApi  # the real class (the package's is patched)

        inspect.signature(HfApi.__init__).bind(self, **kwargs)
        self.calls.append(("__init__", kwargs))

    def _record(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from huggingface_hub.hf_api import HfApi

        bound = inspect.signature(getattr(HfApi, name)).bind(self, *args, **kwargs)
        args_ = dict(bound.arguments)
        args_.pop("self")
        self.calls.append((name, args_))
        return args_

    def create_repo(self, *args: Any, **kwargs: Any) -> str:
        self._record("create_repo", *args, **kwargs)
        return "https://hub.example/org/x"

    def create_commit(self, *args: Any, **kwargs: Any) -> Any:
        self._record("create_commit", *args, **kwargs)

        class Info:
            commit_url = "https://hub.example/org/x/commit/abc"

        return Info()


def test_hub_upload_calls_hfapi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hf, "HfApi", _RecordingApi)
    _RecordingApi.calls = []
    adapter = _folder(
        tmp_path / "adapter",
        {"adapter_model.safetensors": b"w", "README.md": b"old", ".git/HEAD": b"x"},
    )
    merged = _folder(tmp_path / "merged", {"model.safetensors": b"m"})
    card = render_model_card("org/x", base_model="gpt2")
    hub = HfHubClient(token="hf_test", offline=False)
    url = hub.upload(
        str(adapter), "org/x", card=card, extra_folders={"merged": merged}, private=True
    )
    assert url == "https://hub.example/org/x/commit/abc"
    names = [c[0] for c in _RecordingApi.calls]
    assert names == ["__init__", "create_repo", "create_commit"]
    init, repo, commit = (c[1] for c in _RecordingApi.calls)
    assert init["token"] == "hf_test"
    assert repo == {"repo_id": "org/x", "repo_type": "model", "private": True, "exist_ok": True}
    ops = {op.path_in_repo: op for op in commit["operations"]}
    assert sorted(ops) == ["README.md", "adapter_model.safetensors", "merged/model.safetensors"]
    assert all(isinstance(op, hf.CommitOperationAdd) for op in ops.values())
    assert ops["README.md"].path_or_fileobj == card.encode()
    assert commit["commit_message"] == "Upload from kitchen"

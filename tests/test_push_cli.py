"""``kitchen push`` against a local-folder hub: export discovery, the card, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kitchen.adapters.hub import parse_front_matter
from kitchen.cli import main as cli_main


def main(argv: list[str]) -> int:
    """``kitchen ARGV`` in-process. ``cli.main`` appends the optional commands to a module
    list on every call (a second call in one process would register them twice), so
    start from an empty list each time."""
    cli_main._EXTRA_COMMANDS.clear()
    return cli_main.main(argv)


ADAPTER_CONFIG = {"base_model_name_or_path": "Qwen/Qwen2.5-0.5B", "peft_type": "LORA", "r": 8}


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _export(root: Path, *, merged: bool = False) -> None:
    _write(root / "adapter" / "adapter_config.json", json.dumps(ADAPTER_CONFIG))
    _write(root / "adapter" / "adapter_model.safetensors", b"\x00lora-weights")
    if merged:
        _write(root / "merged" / "config.json", "{}")
        _write(root / "merged" / "model.safetensors", b"\x00merged-weights")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def noop_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A real (noop adapters) sft run directory."""
    run_dir = tmp_path / "runs" / "sft-1"
    assert main(["run", "sft", "--run-dir", str(run_dir), "--no-progress"]) == 0
    capsys.readouterr()
    return run_dir


@pytest.fixture
def data_run(tmp_path: Path) -> Path:
    """A hand-written run dir whose dataset is a packaged version with a manifest.json."""
    data = tmp_path / "data" / "v1"
    _write(data / "train.jsonl", '{"messages": []}\n')
    manifest = _write(data / "manifest.json", json.dumps({"kind": "dataset", "version": 1}))
    run = tmp_path / "runs" / "hand"
    config = {
        "dataset": str(data),
        "epochs": 1,
        "model": {"hub_id": "org/base", "mode": "lora"},
        "remote": {"api_key": "sk-very-secret", "url": "http://x"},
    }
    _write(run / "config.json", json.dumps(config))
    _write(
        run / "manifest.json",
        json.dumps({"recipe": "sft", "run_id": "hand", "adapters": "hf", "status": "completed"}),
    )
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0, "val_loss": 2.5}]
    _write(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    (run / "expected_manifest_sha").write_text(
        __import__("hashlib").sha256(manifest.read_bytes()).hexdigest()
    )
    return run


def test_push_without_export_says_to_export_first(
    noop_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["push", str(noop_run), "me/x", "--hub-root", str(tmp_path / "hub")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"run `kitchen export {noop_run} --out DIR` first" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hub").exists()


def test_push_noop_run_to_local_hub(
    noop_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _export(noop_run / "export")
    hub = tmp_path / "hub"
    assert main(["push", str(noop_run), "me/tiny-lora", "--hub-root", str(hub)]) == 0
    out = capsys.readouterr().out
    repo = hub / "me" / "tiny-lora"
    assert f"pushed adapter from {noop_run / 'export' / 'adapter'} to me/tiny-lora" in out
    assert repo.resolve().as_uri() in out
    files = _tree(repo)
    assert sorted(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert files["adapter_model.safetensors"] == b"\x00lora-weights"

    meta, body = parse_front_matter(files["README.md"].decode())
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B"  # from adapter_config.json
    assert meta["library_name"] == "kitchen"
    assert {"kitchen", "sft", "peft"} <= set(meta["tags"])
    assert meta["kitchen"]["recipe"] == "sft"
    assert meta["kitchen"]["run_id"] == "sft-1"
    assert meta["kitchen"]["adapters"] == "noop"
    # the metrics table summarises metrics.jsonl
    history = [json.loads(line) for line in (noop_run / "metrics.jsonl").read_text().splitlines()]
    final_loss = [r["loss"] for r in history if "loss" in r][-1]
    loss_row = next(line for line in body.splitlines() if line.startswith("| loss |"))
    assert loss_row.split("|")[2].strip() == f"{final_loss:.6g}"
    assert "| val_loss |" in body
    # the recipe config, as resolved for the run
    config_block = body.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(config_block) == json.loads((noop_run / "config.json").read_text())
    assert "Data manifest: not recorded" in body  # noop:// data has no manifest


def test_push_card_has_data_manifest_hash_and_masks_secrets(
    data_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _export(data_run / "artifacts" / "export", merged=True)
    hub = tmp_path / "hub"
    args = ["push", str(data_run), "team/m", "--hub-root", str(hub), "--include-merged"]
    assert main(args) == 0
    repo = hub / "team" / "m"
    assert sorted(_tree(repo)) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "merged/config.json",
        "merged/model.safetensors",
    ]
    card = (repo / "README.md").read_text()
    meta, body = parse_front_matter(card)
    expected = (data_run / "expected_manifest_sha").read_text()
    assert meta["kitchen"]["data_manifest_sha256"] == expected
    assert f"Data manifest sha256: `{expected}`" in body
    assert "sk-very-secret" not in card
    assert '"api_key": "***"' in body
    assert "| loss | 2 | 2 | 3 | 2 |" in body
    assert "+ merged model" in capsys.readouterr().out


def test_manifest_export_record_and_base_model_from_config(
    data_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "exported-elsewhere"
    _write(outside / "model.safetensors", b"full-weights")
    _write(outside / "config.json", "{}")
    manifest = json.loads((data_run / "manifest.json").read_text())
    manifest["export"] = {"dir": str(outside)}
    (data_run / "manifest.json").write_text(json.dumps(manifest))
    hub = tmp_path / "hub"
    assert main(["push", str(data_run), "team/full", "--hub-root", str(hub)]) == 0
    meta, _ = parse_front_matter((hub / "team" / "full" / "README.md").read_text())
    assert meta["base_model"] == "org/base"  # config.model.hub_id
    assert meta["kitchen"]["kind"] == "model"
    assert "peft" not in meta["tags"]
    assert "pushed model from" in capsys.readouterr().out


def test_include_merged_without_merged_is_a_usage_error(
    data_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _export(data_run / "export")
    code = main(
        ["push", str(data_run), "t/m", "--hub-root", str(tmp_path / "h"), "--include-merged"]
    )
    assert code == 2
    assert "no exported merged model" in capsys.readouterr().err


def test_folder_option_and_dry_run(
    data_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _export(tmp_path / "out")
    hub = tmp_path / "hub"
    args = ["push", str(data_run), "t/m", "--hub-root", str(hub), "--folder", str(tmp_path / "out")]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("---\n") and "base_model: Qwen/Qwen2.5-0.5B" in out
    assert "would upload" in out and "adapter_model.safetensors" in out
    assert not hub.exists()
    bad = ["push", str(data_run), "t/m", "--hub-root", str(hub), "--folder", str(tmp_path)]
    assert main(bad) == 2
    assert "holds no exported adapter" in capsys.readouterr().err


def test_push_requires_a_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", str(tmp_path), "t/m", "--hub-root", str(tmp_path / "h")]) == 2
    assert "not a kitchen run directory" in capsys.readouterr().err


def test_push_is_registered_and_light() -> None:
    code = (
        "import sys; from kitchen.cli.main import main\n"
        "try:\n    main(['push', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "bad = [m for m in ('huggingface_hub', 'torch', 'wandb', 's3fs') if m in sys.modules]\n"
        "print('BAD', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "REPO_ID" in out.stdout and "--hub-root" in out.stdout
    assert "BAD []" in out.stdout


def test_folder_in_kitchen_export_layout(
    data_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kitchen export RUN --out OUT`` writes OUT/model (full runs) + OUT/export.json."""
    out = tmp_path / "out"
    _write(out / "model" / "model.safetensors", b"full")
    _write(out / "model" / "kitchen_spec.json", json.dumps({"hub_id": "org/from-spec"}))
    _write(out / "merged" / "model.safetensors", b"merged")
    _write(out / "export.json", json.dumps({"run": str(data_run), "model": str(out / "model")}))
    hub = tmp_path / "hub"
    args = ["push", str(data_run), "t/full", "--hub-root", str(hub), "--folder", str(out)]
    assert main([*args, "--include-merged"]) == 0
    files = _tree(hub / "t" / "full")
    assert files["model.safetensors"] == b"full"
    assert files["merged/model.safetensors"] == b"merged"
    meta, _ = parse_front_matter(files["README.md"].decode())
    assert meta["base_model"] == "org/from-spec"
    capsys.readouterr()

    _write(out / "export.json", json.dumps({"run": str(tmp_path / "another-run")}))
    assert main(args) == 2
    assert "was exported from" in capsys.readouterr().err

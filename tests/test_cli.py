"""The CLI contract: commands, one-line errors with exit code 2, no torch for --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def kitchen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kitchen", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from kitchen.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'transformers' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: kitchen" in out.stdout and out.stdout.strip().endswith("ok")


def test_import_kitchen_does_not_import_torch() -> None:
    code = (
        "import sys, kitchen; kitchen.workflow; kitchen.Context; assert 'torch' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_list_prints_one_line_per_recipe() -> None:
    out = kitchen("list")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert any(line.startswith("sft\t") for line in lines)
    assert all("\t" in line for line in lines)


@pytest.mark.parametrize("fmt", ["tree", "json", "mermaid"])
def test_describe_formats(fmt: str) -> None:
    out = kitchen("describe", "sft", "--format", fmt)
    assert out.returncode == 0, out.stderr
    if fmt == "json":
        assert json.loads(out.stdout)["name"] == "supervised"
    elif fmt == "mermaid":
        assert out.stdout.startswith("flowchart TD")
    else:
        assert out.stdout.startswith("workflow supervised")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "sft", "--set", "batch_size=0"], "config field 'batch_size'"),
        (["run", "sft", "--set", "epochs"], "--set expects key=value"),
        (["run", "sft", "--set", "no_such_field=1"], "config field 'no_such_field'"),
        (["run", "nope"], "unknown recipe 'nope'"),
        (["run", "sft", "--adapters", "gpu9000"], "unknown adapters 'gpu9000'"),
        (["describe", "nope"], "unknown recipe 'nope'"),
        (["run", "sft", "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    out = kitchen(*args, "--run-dir", str(tmp_path / "r")) if args[0] == "run" else kitchen(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert needle in lines[0]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "r" / "manifest.json").exists(), "bad input must not start a run"


def test_bad_yaml_run_file_and_bad_resume_dir(tmp_path: Path) -> None:
    bad = tmp_path / "run.yaml"
    bad.write_text("recipe: sft\nconfig:\n  epochs: -1\n")
    out = kitchen("run", str(bad), "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and "config field 'epochs'" in out.stderr
    out = kitchen("run", "sft", "--resume", str(tmp_path / "empty"))
    assert out.returncode == 2 and "not a kitchen run directory" in out.stderr
    assert "Traceback" not in out.stderr

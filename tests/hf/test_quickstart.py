"""The quickstart main job on hf: loss falls, and kill -9 + resume is bit-identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kill9 import kill_after_checkpoints, local_checkpoints

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

KITCHEN = [
    sys.executable,
    "-m",
    "kitchen",
    "run",
    "quickstart",
    "--adapters",
    "hf",
    "--no-progress",
]
# A smaller model and a step cap keep this test quick; the code path is the README's.
SMALL = [
    "vocab_size=512",
    "model.config.hidden_size=64",
    "model.config.intermediate_size=128",
    "model.config.num_hidden_layers=2",
    "max_steps=16",
    "checkpoint_every=4",
    "batch_size=8",
]


def sets(overrides: list[str]) -> list[str]:
    out: list[str] = []
    for o in overrides:
        out += ["--set", o]
    return out


def metrics(run: Path) -> list[dict[str, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]


def final_weights(run: Path) -> dict[str, object]:
    (path,) = sorted((run / "checkpoints" / "sampler_weights" / "final").glob("*.safetensors"))
    return safetensors_torch.load_file(str(path))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("qs") / "ref"
    out = subprocess.run(
        [*KITCHEN, "--run-dir", str(run), *sets(SMALL)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert "sample: The cook" in out.stdout
    return run


def test_loss_falls_and_validation_beats_the_untrained_model(reference: Path) -> None:
    records = metrics(reference)
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    evals = [r for r in records if "val_loss" in r]
    assert evals[0]["step"] == 0  # the baseline eval of the untrained model
    untrained, trained = evals[0]["val_loss"], evals[-1]["val_loss"]
    assert trained < untrained
    state = json.loads((reference / "manifest.json").read_text())["final_state"]
    assert state["val_loss_untrained"] == pytest.approx(untrained)
    assert (reference / "tokenizer" / "tokenizer.json").is_file()
    assert (reference / "artifacts" / "sample.txt").read_text().startswith("The cook")


def test_kill_9_mid_training_then_resume_is_bit_identical(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    kill_after_checkpoints(
        [*KITCHEN, "--run-dir", str(run), *sets(SMALL)],
        local_checkpoints(run),
        2,
        timeout=300,
        poll=0.01,
        wait=60,
    )
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kitchen",
            "run",
            "quickstart",
            "--resume",
            str(run),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    a, b = final_weights(reference), final_weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs after resume"
    assert metrics(run) == metrics(reference)

"""Data parallelism: ``accelerate launch`` with 2 CPU processes (gloo) trains the sft recipe
with the same loss curve, gradient norms, validation loss and final weights as one process
on the combined batch; only rank 0 writes the run directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
safetensors_torch = pytest.importorskip("safetensors.torch")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "multiprocess" / "sft_ddp.py"
ACCELERATE = Path(sys.executable).with_name("accelerate")


def _overrides(data: Path) -> list[str]:
    # 17 rows, batch 8: batches of 8, 8 and 1, so in the last one rank 1 holds no datum
    # and must still take part in the step's all-reduce.
    sets = [
        f"dataset={data}",
        "eval_dataset=" + str(data),
        "batch_size=8",
        "epochs=2",
        "checkpoint_every=2",
        "learning_rate=2e-2",
        "model.config.hidden_size=32",
        "model.config.intermediate_size=64",
    ]
    out: list[str] = []
    for s in sets:
        out += ["--set", s]
    return out


def _run(cmd: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def _records(run: Path) -> list[dict[str, float]]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict[str, object]:
    (path,) = (run / "checkpoints" / "sampler_weights" / "final").glob("*.safetensors")
    return safetensors_torch.load_file(str(path))


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate CLI not installed")
def test_two_processes_match_one_process_on_the_combined_batch(tmp_path: Path) -> None:
    rows = (ROOT / "src/kitchen/data/corpus/chat.jsonl").read_text().splitlines()[:17]
    data = tmp_path / "chat17.jsonl"
    data.write_text("\n".join(rows) + "\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    single = tmp_path / "single"
    _run([sys.executable, str(SCRIPT), "--run-dir", str(single), *_overrides(data)], scratch)
    multi = tmp_path / "multi"
    # `--multi_gpu` selects accelerate's torch.distributed launcher; with no GPU the ranks
    # are CPU processes and kitchen joins them over gloo. (`--cpu` would start one process.)
    launch = [
        str(ACCELERATE),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
    ]
    out = _run([*launch, str(SCRIPT), "--run-dir", str(multi), *_overrides(data)], scratch)
    assert json.loads(out.stdout.strip().splitlines()[-1])["world_size"] == 2

    one, two = _records(single), _records(multi)
    steps_one = [r for r in one if "loss" in r]
    steps_two = [r for r in two if "loss" in r]
    assert len(steps_one) == len(steps_two) == 6  # 3 batches x 2 epochs
    for a, b in zip(steps_one, steps_two, strict=True):
        assert b["step"] == a["step"]
        assert b["num_tokens"] == a["num_tokens"]  # the global batch, summed over ranks
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["optim/grad_norm"] == pytest.approx(a["optim/grad_norm"], rel=1e-4)
    assert steps_one[-1]["loss"] < steps_one[0]["loss"]
    vals_one = [r["val_loss"] for r in one if "val_loss" in r]
    vals_two = [r["val_loss"] for r in two if "val_loss" in r]
    assert vals_two == pytest.approx(vals_one, rel=1e-5) and len(vals_one) == 2

    w1, w2 = _weights(single), _weights(multi)
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-6, msg=k)

    # Rank 0 wrote the run directory as one process does; rank 1 left nothing behind.
    assert (multi / "checkpoints.jsonl").is_file()
    assert len((multi / "checkpoints.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in multi.iterdir()) == sorted(p.name for p in single.iterdir())
    leftovers = [p.name for p in scratch.iterdir() if p.name.startswith("kitchen-rank")]
    assert leftovers == []
    shutil.rmtree(scratch, ignore_errors=True)

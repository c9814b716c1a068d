"""kitchen export: the LoRA adapter as safetensors, and a merged model transformers loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch")
pytest.importorskip("peft")

SMALL = [
    "model.mode=lora",
    "max_steps=4",
    "vocab_size=512",
    "model.config.hidden_size=64",
    "model.config.intermediate_size=128",
    "model.config.num_hidden_layers=2",
    "checkpoint_every=0",
]


def kitchen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kitchen", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("export")
    sets = [x for o in SMALL for x in ("--set", o)]
    out = kitchen(
        "run",
        "quickstart",
        "--adapters",
        "hf",
        "--no-progress",
        "--run-dir",
        str(root / "run"),
        *sets,
    )
    assert out.returncode == 0, out.stderr
    out = kitchen("export", str(root / "run"), "--out", str(root / "out"), "--merged")
    assert out.returncode == 0, out.stderr
    return root / "run", root / "out"


def test_adapter_is_safetensors_with_lora_weights(exported: tuple[Path, Path]) -> None:
    from safetensors.torch import load_file

    _, out = exported
    tensors = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in tensors) and any("lora_B" in k for k in tensors)
    # trained: at least one lora_B (zero at init) moved away from zero
    assert any(t.abs().sum() > 0 for k, t in tensors.items() if "lora_B" in k)
    assert not list((out / "adapter").glob("*.bin")), "no pickled weights in the export"


def test_merged_model_loads_with_plain_transformers_and_matches_the_adapter(
    exported: tuple[Path, Path],
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from kitchen.adapters.hf.model_spec import ModelSpec, load_base
    from kitchen.io import read_json

    _, out = exported
    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged")).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(str(out / "merged"))
    ids = torch.tensor([tok.encode("The cook put the pan on the stove")])
    spec = ModelSpec.model_validate(read_json(out / "adapter" / "kitchen_spec.json"))
    reference = PeftModel.from_pretrained(
        load_base(spec.model_copy(update={"mode": "full"})), str(out / "adapter")
    ).eval()
    with torch.no_grad():
        a = merged(ids).logits
        b = reference(ids).logits
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    gen = merged.generate(ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] == ids.shape[1] + 5


def test_export_of_an_unfinished_run_is_a_clean_error(tmp_path: Path) -> None:
    from kitchen.rundir import RunDir

    rd = RunDir.create(tmp_path / "r")
    rd.write_config({})
    rd.update_manifest(status="running")
    out = kitchen("export", str(tmp_path / "r"), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "has no final weights" in out.stderr
    assert "Traceback" not in out.stderr


def test_export_of_a_noop_run_is_a_clean_error(tmp_path: Path) -> None:
    run = tmp_path / "noop"
    done = kitchen("run", "sft", "--adapters", "noop", "--run-dir", str(run), "--no-progress")
    assert done.returncode == 0, done.stderr
    out = kitchen("export", str(run), "--out", str(tmp_path / "o"))
    assert out.returncode == 2, out.stderr
    assert "trained with --adapters noop" in out.stderr and "--adapters hf" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_manifest_records_where_the_run_trained(exported: tuple[Path, Path]) -> None:
    import json

    hw = json.loads((exported[0] / "manifest.json").read_text())["hardware"]
    # model.device / model.dtype default to auto: this suite runs on CPUs, so float32 on cpu
    assert hw["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert hw["dtype"] in ("float32", "bfloat16")
    assert hw["torch"] == torch.__version__
    assert hw["cuda"] == torch.version.cuda
    assert (hw["gpu"] is None) == (not hw["device"].startswith(("cuda", "mps")))

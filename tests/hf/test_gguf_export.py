"""kitchen export --gguf: F16 and Q8_0 files read back with gguf's reader match the merged
model tensor by tensor, and bad requests fail with one line naming the option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch")
pytest.importorskip("peft")
gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

SMALL = [
    "max_steps=3",
    "vocab_size=300",
    "model.config.hidden_size=64",
    "model.config.intermediate_size=128",
    "model.config.num_hidden_layers=2",
    "checkpoint_every=0",
]


def kitchen(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The ``kitchen`` CLI in-process (the torch import is paid once per test session)."""
    from kitchen.cli.main import main

    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kitchen import run_recipe
    from kitchen.recipes.registry import get_recipe

    run = tmp_path_factory.mktemp("gguf") / "lora"
    run_recipe(
        get_recipe("quickstart"), adapters="hf", run_dir=run, overrides=["model.mode=lora", *SMALL]
    )
    return run


def _read(path: Path) -> dict[str, np.ndarray]:
    reader = gguf.GGUFReader(str(path))
    return {
        t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(
            tuple(int(d) for d in reversed(t.shape.tolist()))
        )
        for t in reader.tensors
    }


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's interleaved rotary rows back to the Hugging Face halves layout."""
    return (
        w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def test_gguf_f16_and_q8_0_round_trip_every_tensor(
    lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.numpy import load_file

    rc, stdout, stderr = kitchen(
        capsys, "export", str(lora_run), "--out", str(tmp_path), "--merged",
        "--gguf", "f16", "--gguf", "q8_0",
    )  # fmt: skip
    assert rc == 0, stderr
    assert "gguf f16:" in stdout and "gguf q8_0:" in stdout
    merged = tmp_path / "merged"
    cfg = json.loads((merged / "config.json").read_text())
    hf = {
        k: v.astype(np.float32)
        for k, v in load_file(str(merged / "model.safetensors")).items()
        if not k.endswith("inv_freq")
    }
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    for kind, tol, size_ratio in (("f16", 1e-3, 0.5), ("q8_0", 1 / 100, 0.5)):
        path = tmp_path / "gguf" / f"model-{kind}.gguf"
        tensors = _read(path)
        assert len(tensors) == len(hf)  # one GGUF tensor per model tensor, no more
        for key, want in hf.items():
            got = tensors[names.get_name(key, try_suffixes=(".weight",))]
            if key.endswith("q_proj.weight"):
                got = _unpermute(got, n_head)
            elif key.endswith("k_proj.weight"):
                got = _unpermute(got, n_kv)
            assert got.shape == want.shape, key
            err = np.abs(got - want).max() / np.abs(want).max()
            assert err < tol, (kind, key, err)
        # half-precision-or-smaller storage: well under the f32 safetensors size
        assert (
            path.stat().st_size < size_ratio * 1.2 * (merged / "model.safetensors").stat().st_size
        )
        reader = gguf.GGUFReader(str(path))
        field = reader.fields["tokenizer.ggml.tokens"]
        assert len(field.data) == cfg["vocab_size"]
        arch = reader.fields["general.architecture"]
        assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    q8 = gguf.GGUFReader(str(tmp_path / "gguf" / "model-q8_0.gguf"))
    types = {t.name: t.tensor_type.name for t in q8.tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["output_norm.weight"] == "F32"
    export = json.loads((tmp_path / "export.json").read_text())
    assert set(export["gguf"]) == {"f16", "q8_0"}


def test_gguf_of_an_unmerged_lora_run_is_one_line_naming_the_option(
    lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, stderr = kitchen(
        capsys, "export", str(lora_run), "--out", str(tmp_path), "--gguf", "q8_0"
    )
    assert rc == 2
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert "--gguf q8_0" in stderr and "--merged" in stderr
    assert not (tmp_path / "adapter").exists()  # refused before writing anything


def test_unsupported_architecture_is_refused(tmp_path: Path) -> None:
    from kitchen.adapters.hf import gguf_export
    from kitchen.errors import UsageError

    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})
    )
    with pytest.raises(UsageError, match="unsupported architecture GPT2LMHeadModel"):
        gguf_export.write_gguf(tmp_path, tmp_path / "x.gguf", "f16")
    with pytest.raises(UsageError, match="unknown type 'q4'"):
        gguf_export.write_gguf(tmp_path, tmp_path / "x.gguf", "q4")
    assert not (tmp_path / "x.gguf").exists()


def test_q8_0_of_a_qlora_base_needs_merging_first(tmp_path: Path) -> None:
    from kitchen.adapters.hf.export import _check_gguf_request
    from kitchen.adapters.hf.model_spec import ModelSpec
    from kitchen.errors import UsageError

    spec = ModelSpec(config={"model_type": "llama"}, mode="qlora")
    with pytest.raises(UsageError, match=r"--gguf q8_0: Q8_0 of a qlora base .* add --merged"):
        _check_gguf_request(spec, tmp_path, ["q8_0"], merged=False)
    _check_gguf_request(spec, tmp_path, ["q8_0"], merged=True)  # merged first: accepted
    bad = ModelSpec(config={"model_type": "gpt2"}, mode="full")
    with pytest.raises(UsageError, match="unsupported architecture model_type 'gpt2'"):
        _check_gguf_request(bad, tmp_path, ["f16"], merged=False)

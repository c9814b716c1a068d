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


def _llama_cpp_forward(t: dict[str, np.ndarray], cfg: dict, ids: list[int]) -> np.ndarray:
    """A reference Llama forward over the GGUF tensors with llama.cpp's conventions
    (interleaved-pair rotary embedding on the permuted q/k rows), in numpy."""
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg["hidden_size"] // n_head
    eps, base = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 10000.0)

    def norm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(x: np.ndarray) -> np.ndarray:  # x: (T, heads, d); pairs (2i, 2i+1)
        pos = np.arange(x.shape[0])[:, None]
        ang = pos * base ** (-np.arange(0, d, 2) / d)[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        return out

    x = t["token_embd.weight"][ids].astype(np.float64)
    n = len(ids)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        h = norm(x, t[f"blk.{i}.attn_norm.weight"])
        q = rope((h @ t[f"blk.{i}.attn_q.weight"].T).reshape(n, n_head, d))
        k = rope((h @ t[f"blk.{i}.attn_k.weight"].T).reshape(n, n_kv, d))
        v = (h @ t[f"blk.{i}.attn_v.weight"].T).reshape(n, n_kv, d)
        rep = n_head // n_kv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        att = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", att, v).reshape(n, -1)
        x = x + o @ t[f"blk.{i}.attn_output.weight"].T
        h = norm(x, t[f"blk.{i}.ffn_norm.weight"])
        g = h @ t[f"blk.{i}.ffn_gate.weight"].T
        x = (
            x
            + ((g / (1 + np.exp(-g))) * (h @ t[f"blk.{i}.ffn_up.weight"].T))
            @ t[f"blk.{i}.ffn_down.weight"].T
        )
    head = t.get("output.weight", t["token_embd.weight"])
    return norm(x, t["output_norm.weight"]) @ head.T


def test_gguf_tensors_in_llama_cpp_layout_reproduce_the_model_logits(
    lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The q/k permutation is right for llama.cpp's rotary layout: a forward pass with
    llama.cpp's conventions over the F16 file's tensors gives the merged model's logits."""
    from transformers import AutoModelForCausalLM

    rc, _, stderr = kitchen(
        capsys, "export", str(lora_run), "--out", str(tmp_path), "--merged", "--gguf", "f16"
    )
    assert rc == 0, stderr
    merged = tmp_path / "merged"
    cfg = json.loads((merged / "config.json").read_text())
    tensors = {
        k: v.astype(np.float64) for k, v in _read(tmp_path / "gguf" / "model-f16.gguf").items()
    }
    ids = [1, 17, 42, 99, 7, 250, 3, 64, 128, 5]
    model = AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    with torch.no_grad():
        want = model(input_ids=torch.tensor([ids])).logits[0].double().numpy()
    got = _llama_cpp_forward(tensors, cfg, ids)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 2e-2, err  # F16 weights; a wrong permutation is off by O(1)
    # and the un-permuted layout (the HF one) would not match: the check can fail
    wrong = dict(tensors)
    n_head = cfg["num_attention_heads"]
    for i in range(cfg["num_hidden_layers"]):
        wrong[f"blk.{i}.attn_q.weight"] = _unpermute(tensors[f"blk.{i}.attn_q.weight"], n_head)
    bad = np.abs(_llama_cpp_forward(wrong, cfg, ids) - want).max() / np.abs(want).max()
    assert bad > 10 * err

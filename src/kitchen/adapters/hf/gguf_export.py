"""GGUF export of a transformers model directory (F16 or Q8_0), and its round-trip check.

``write_gguf(model_dir, out, "f16" | "q8_0")`` reads a saved Llama-family model (its
``config.json``, ``*.safetensors`` and ``tokenizer.json``) and writes one GGUF file with the
``gguf`` package (llama.cpp's own writer library): hyperparameters, the byte-level BPE
vocabulary and merges, and every tensor under llama.cpp's names. No torch is needed.

Layout rules follow llama.cpp's converter: q/k projection rows are permuted from the
Hugging Face rotary layout (two halves) to llama.cpp's (interleaved pairs); 1-D tensors
(norms) stay F32; a matrix whose rows do not split into whole 32-value Q8_0 blocks falls
back to F16.

``verify_gguf(path, model_dir)`` reads the file back with ``gguf.GGUFReader``, dequantises
every tensor and compares it with the model's (after the same permutation): every tensor
must be present, with the same shape, within the tolerance of its storage type.

Only the Llama layout is supported (``LlamaForCausalLM``, ``MistralForCausalLM``, which
llama.cpp loads as ``llama``); anything else is a :class:`~kitchen.errors.UsageError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from kitchen.errors import UsageError
from kitchen.optional import require

GgufType = Literal["f16", "q8_0"]
GGUF_TYPES: tuple[str, ...] = ("f16", "q8_0")
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
#: Max abs error allowed per tensor, relative to the tensor's max abs value. F16 keeps
#: 11 significant bits (2**-11 ~ 5e-4); Q8_0 stores each 32-value block as int8 times a
#: per-block f16 scale, so its error is at most half a step, 1/254 of the block max.
TOLERANCE = {"F32": 1e-7, "F16": 1e-3, "Q8_0": 1 / 200}


def read_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise UsageError(f"--gguf: {model_dir} has no config.json (not a transformers model)")
    cfg: dict[str, Any] = json.loads(path.read_text())
    return cfg


def check_architecture(config: dict[str, Any], where: str = "") -> None:
    """A UsageError naming the option unless llama.cpp's ``llama`` layout fits ``config``."""
    archs = config.get("architectures") or []
    model_type = config.get("model_type")
    ok = any(a in SUPPORTED_ARCHITECTURES for a in archs) or (
        not archs and model_type in ("llama", "mistral")
    )
    if not ok:
        name = ", ".join(archs) or f"model_type {model_type!r}"
        raise UsageError(
            f"--gguf: unsupported architecture {name}{where}; supported: "
            + ", ".join(SUPPORTED_ARCHITECTURES)
        )


def _permute(w: Any, n_head: int) -> Any:
    """HF rotary layout (first half, second half) -> llama.cpp's interleaved pairs."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def gguf_tensors(model_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The model's tensors as float32 numpy arrays under their GGUF names, permuted."""
    np = require("numpy", "hf")
    gguf = require("gguf", "gguf")
    st_numpy = require("safetensors.numpy", "hf")

    n_layers = int(config["num_hidden_layers"])
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UsageError(f"--gguf: {model_dir} has no *.safetensors weights")
    out: dict[str, Any] = {}
    for f in files:
        for key, value in st_numpy.load_file(str(f)).items():
            if key.endswith("rotary_emb.inv_freq"):
                continue  # recomputed from rope_theta by llama.cpp
            name = names.get_name(key, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise UsageError(f"--gguf: tensor {key!r} in {f.name} has no llama.cpp name")
            arr = np.asarray(value, dtype=np.float32)
            if key.endswith("q_proj.weight"):
                arr = _permute(arr, n_head)
            elif key.endswith("k_proj.weight"):
                arr = _permute(arr, n_kv)
            out[name] = arr
    if "output.weight" not in out and config.get("tie_word_embeddings", True) is False:
        raise UsageError(f"--gguf: {model_dir} has untied embeddings but no lm_head weight")
    return out


def _vocab(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens (by id, padded to the model's vocab size), their types, and the BPE merges."""
    gguf = require("gguf", "gguf")
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise UsageError(f"--gguf: {model_dir} has no tokenizer.json to embed")
    tok = json.loads(path.read_text())
    model = tok.get("model", {})
    if model.get("type") != "BPE":
        raise UsageError(
            f"--gguf: tokenizer type {model.get('type')!r} in {path}; only byte-level BPE "
            "(GPT-2 style) tokenizers are supported"
        )
    by_id: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    special = {int(a["id"]) for a in tok.get("added_tokens", []) if a.get("special")}
    for a in tok.get("added_tokens", []):
        by_id[int(a["id"])] = a["content"]
    if by_id and max(by_id) >= vocab_size:
        raise UsageError(
            f"--gguf: tokenizer has id {max(by_id)} but the model's vocab_size is {vocab_size}"
        )
    tokens, types = [], []
    for i in range(vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            kind = gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL
        else:
            tokens.append(f"[PAD{i}]")
            kind = gguf.TokenType.UNUSED
        types.append(int(kind))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


def _special_ids(model_dir: Path, tokens: list[str]) -> dict[str, int]:
    """bos/eos/pad ids from the model's generation/config and tokenizer config."""
    ids: dict[str, int] = {}
    cfg = read_config(model_dir)
    tc_path = model_dir / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text()) if tc_path.is_file() else {}
    for kind in ("bos", "eos", "pad"):
        value = cfg.get(f"{kind}_token_id")
        if isinstance(value, list):
            value = value[0] if value else None
        tok = tc.get(f"{kind}_token")
        if isinstance(tok, dict):
            tok = tok.get("content")
        if value is None and isinstance(tok, str) and tok in tokens:
            value = tokens.index(tok)
        if isinstance(value, int) and 0 <= value < len(tokens):
            ids[kind] = value
    return ids


def write_gguf(
    model_dir: str | os.PathLike[str], out: str | os.PathLike[str], outtype: str
) -> dict[str, Any]:
    """Write ``out`` (a ``.gguf`` file, atomically) from the model in ``model_dir``."""
    if outtype not in GGUF_TYPES:
        raise UsageError(f"--gguf: unknown type {outtype!r}; choose one of {', '.join(GGUF_TYPES)}")
    np = require("numpy", "hf")
    gguf = require("gguf", "gguf")
    src = Path(model_dir)
    config = read_config(src)
    check_architecture(config, f" in {src}")
    tensors = gguf_tensors(src, config)
    n_embd = int(config["hidden_size"])
    n_head = int(config["num_attention_heads"])
    vocab_size = int(config["vocab_size"])
    tokens, types, merges = _vocab(src, vocab_size)

    dest = Path(out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(config.get("_name_or_path") or src.name)
    w.add_context_length(int(config.get("max_position_embeddings", 2048)))
    w.add_embedding_length(n_embd)
    w.add_block_count(int(config["num_hidden_layers"]))
    w.add_feed_forward_length(int(config["intermediate_size"]))
    w.add_head_count(n_head)
    w.add_head_count_kv(int(config.get("num_key_value_heads") or n_head))
    w.add_rope_dimension_count(int(config.get("head_dim") or n_embd // n_head))
    w.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    w.add_vocab_size(vocab_size)
    ftype = gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    w.add_file_type(int(ftype))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    if merges:
        w.add_token_merges(merges)
    special = _special_ids(src, tokens)
    if "bos" in special:
        w.add_bos_token_id(special["bos"])
        w.add_add_bos_token(False)  # kitchen's chat rendering places its own special tokens
    if "eos" in special:
        w.add_eos_token_id(special["eos"])
    if "pad" in special:
        w.add_pad_token_id(special["pad"])

    stored: dict[str, str] = {}
    for name, arr in tensors.items():
        qtype = gguf.GGMLQuantizationType.F32
        if arr.ndim >= 2:
            qtype = gguf.GGMLQuantizationType.F16
            if outtype == "q8_0" and arr.shape[-1] % 32 == 0:
                qtype = gguf.GGMLQuantizationType.Q8_0
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, arr.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, arr.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
        stored[name] = qtype.name
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
    finally:
        w.close()
    os.replace(tmp, dest)
    return {
        "path": str(dest),
        "type": outtype,
        "bytes": dest.stat().st_size,
        "tensors": stored,
    }


def verify_gguf(path: str | os.PathLike[str], model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``path`` back and compare every tensor with ``model_dir``'s; raise on mismatch.

    Returns per-tensor storage types and relative max errors, and the metadata checked."""
    np = require("numpy", "hf")
    gguf = require("gguf", "gguf")
    src = Path(model_dir)
    config = read_config(src)
    expected = gguf_tensors(src, config)
    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"]
    arch_name = bytes(arch.parts[arch.data[0]]).decode()
    problems: list[str] = []
    if arch_name != "llama":
        problems.append(f"general.architecture is {arch_name!r}, expected 'llama'")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None or len(tokens.data) != int(config["vocab_size"]):
        problems.append("tokenizer.ggml.tokens missing or not vocab_size long")
    found: dict[str, Any] = {}
    report: dict[str, dict[str, Any]] = {}
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        found[t.name] = data.reshape(tuple(int(d) for d in reversed(t.shape.tolist())))
        report[t.name] = {"type": t.tensor_type.name}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        problems.append(f"tensors missing from the file: {missing}")
    if extra:
        problems.append(f"tensors not in the model: {extra}")
    worst = 0.0
    for name in sorted(set(expected) & set(found)):
        want, got = expected[name], found[name]
        if want.shape != got.shape:
            problems.append(f"{name}: shape {got.shape} in the file, {want.shape} in the model")
            continue
        scale = float(np.abs(want).max()) or 1.0
        err = float(np.abs(got.astype(np.float32) - want).max()) / scale
        report[name]["rel_max_err"] = err
        worst = max(worst, err)
        tol = TOLERANCE[report[name]["type"]]
        if err > tol:
            problems.append(
                f"{name}: relative error {err:.2e} > {tol:.0e} ({report[name]['type']})"
            )
    if problems:
        raise UsageError(f"GGUF check failed for {path}: " + "; ".join(problems))
    return {"path": str(path), "tensors": report, "rel_max_err": worst, "arch": arch_name}

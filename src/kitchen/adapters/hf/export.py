"""Exporting a finished run: the LoRA adapter as safetensors, and optionally a merged model.

The merged model is the base model with the adapter folded into its weights
(``merge_and_unload``), saved with its tokenizer as an ordinary transformers model
directory, so ``AutoModelForCausalLM.from_pretrained(DIR)`` loads and runs it with no
kitchen and no peft. A QLoRA adapter is merged into the *unquantised* base (4-bit weights
cannot absorb a LoRA delta losslessly).

``gguf=("f16", "q8_0")`` also writes ``out/gguf/model-<type>.gguf`` from the merged (or
full) model and checks each file by reading it back (``kitchen.adapters.hf.gguf_export``).
A LoRA/QLoRA run needs ``merged=True`` for that: its base alone is not the trained model.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kitchen.adapters.hf.model_spec import ModelSpec, load_base
from kitchen.errors import UsageError
from kitchen.io import atomic_write_json, read_json
from kitchen.rundir import RunDir

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def final_weights_dir(run: RunDir) -> Path:
    """The directory ``save_weights_for_sampler("final")`` wrote for this run."""
    state = run.read_manifest().get("final_state", {})
    path = state.get("final_weights")
    if not path or not Path(path).is_dir():
        raise UsageError(
            f"{run.root} has no final weights (status {run.read_manifest().get('status')!r}); "
            "export needs a completed run: finish it with `kitchen run RECIPE --resume DIR`"
        )
    weights = Path(path)
    if not (weights / "kitchen_spec.json").is_file():
        adapters = run.read_manifest().get("adapters")
        raise UsageError(
            f"{run.root} was trained with --adapters {adapters}, whose weights "
            f"({weights}) are not a transformers model; export needs a run of the hf "
            "adapters: `kitchen run RECIPE --adapters hf`"
        )
    return weights


def _commit(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def _run_tokenizer(run: RunDir) -> Path | None:
    """The ``tokenizer`` directory the run's config named, if any."""
    cfg = run.root / "config.json"
    path = read_json(cfg).get("tokenizer") if cfg.is_file() else None
    return Path(path) if isinstance(path, str) and path else None


def _copy_tokenizer(run: RunDir, spec: ModelSpec, dest: Path) -> bool:
    candidates = (
        run.root / "tokenizer",
        _run_tokenizer(run),
        Path(spec.path) if spec.path else None,
    )
    for src in candidates:
        if src is not None and (src / "tokenizer.json").is_file():
            for f in src.iterdir():
                if f.is_file() and f.name.startswith(("tokenizer", "special_tokens")):
                    shutil.copy2(f, dest / f.name)
            return True
    return False


def _check_gguf_request(spec: ModelSpec, weights: Path, gguf: Sequence[str], merged: bool) -> None:
    """Refuse a GGUF request that cannot work before any export work starts."""
    from kitchen.adapters.hf import gguf_export

    for t in gguf:
        if t not in gguf_export.GGUF_TYPES:
            raise UsageError(
                f"--gguf: unknown type {t!r}; choose one of {', '.join(gguf_export.GGUF_TYPES)}"
            )
    if spec.is_lora and not merged:
        what = f"{gguf[0].upper()} of a {spec.mode} base" if spec.mode == "qlora" else "GGUF"
        raise UsageError(
            f"--gguf {gguf[0]}: {what} needs the adapter merged first (the "
            f"{'4-bit ' if spec.mode == 'qlora' else ''}base alone is not the trained model); "
            "add --merged"
        )
    config = spec.config
    if config is None and spec.path and (Path(spec.path) / "config.json").is_file():
        config = gguf_export.read_config(spec.path)
    if config is None and (weights / "config.json").is_file():
        config = gguf_export.read_config(weights)
    if config is not None:
        gguf_export.check_architecture(config)


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    merged: bool = False,
    gguf: Sequence[str] = (),
) -> dict[str, Any]:
    """Write ``out/adapter`` (LoRA runs) or ``out/model`` (full runs), ``out/merged``
    with ``merged=True``, and ``out/gguf/model-<type>.gguf`` for each ``gguf`` type.
    Each directory or file is staged and renamed into place."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    run = RunDir.open(run_dir)
    weights = final_weights_dir(run)
    spec = ModelSpec.model_validate(read_json(weights / "kitchen_spec.json"))
    if gguf:
        _check_gguf_request(spec, weights, gguf, merged)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {"spec": spec.model_dump(mode="json")}

    kind = "adapter" if spec.is_lora else "model"
    tmp = out_dir / f".{kind}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(weights, tmp)
    (tmp / "complete.json").unlink(missing_ok=True)  # kitchen's internal marker
    _copy_tokenizer(run, spec, tmp)
    _commit(tmp, out_dir / kind)
    written[kind] = str(out_dir / kind)

    if merged:
        written["merged"] = str(_export_merged(run, spec, out_dir / kind, out_dir))
    if gguf:
        from kitchen.adapters.hf import gguf_export

        source = Path(written.get("merged") or written["model"])
        files = {}
        for t in gguf:
            info = gguf_export.write_gguf(source, out_dir / "gguf" / f"model-{t}.gguf", t)
            check = gguf_export.verify_gguf(info["path"], source)
            files[t] = {
                "path": info["path"],
                "bytes": info["bytes"],
                "rel_max_err": check["rel_max_err"],
            }
        written["gguf"] = files
    atomic_write_json(out_dir / "export.json", {"run": str(run.root), **written})
    # `kitchen push RUN REPO` finds the export through the manifest, wherever --out was.
    run.update_manifest(export={k: v for k, v in written.items() if k != "spec"})
    return written


def _export_merged(run: RunDir, spec: ModelSpec, exported: Path, out_dir: Path) -> Path:
    import torch

    tmp = out_dir / ".merged.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if spec.is_lora:
        from peft import PeftModel

        base_spec = spec.model_copy(update={"mode": "full"})  # unquantised base for qlora
        base = load_base(base_spec)  # model.device / model.dtype, resolved
        model = PeftModel.from_pretrained(base, str(exported)).merge_and_unload()
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(exported), torch_dtype=torch.float32)
    model.save_pretrained(str(tmp), safe_serialization=True)
    if not _copy_tokenizer(run, spec, tmp):
        raise UsageError(f"{run.root}: no tokenizer to ship with the merged model")
    _commit(tmp, out_dir / "merged")
    return out_dir / "merged"

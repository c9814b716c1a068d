"""Stages the quickstart adds around the supervised workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kitchen.context import Context
from kitchen.errors import UsageError
from kitchen.ports.types import ModelInput, SamplingParams
from kitchen.workflows.quickstart.config import QuickstartConfig
from kitchen.workflows.supervised import stages as sft


def _cfg(ctx: Context) -> QuickstartConfig:
    cfg = ctx.config
    if not isinstance(cfg, QuickstartConfig):
        cfg = QuickstartConfig.model_validate(cfg or {})
    return cfg


def corpus_dir(cfg: QuickstartConfig) -> Path:
    if cfg.corpus == "bundled":
        from kitchen.data import corpus_path

        return Path(corpus_path("train.txt")).parent
    root = Path(cfg.corpus)
    if not (root / "train.txt").is_file():
        raise UsageError(
            f"config field 'corpus': {root} has no train.txt; point it at a directory "
            "holding train.txt (and optionally valid.txt) or use 'bundled'"
        )
    return root


def chunk_text(text: str, size: int) -> list[str]:
    """Split at line boundaries into chunks of about ``size`` characters (never empty)."""
    chunks: list[str] = []
    cur: list[str] = []
    length = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        cur.append(line)
        length += len(line) + 1
        if length >= size:
            chunks.append(" ".join(cur))
            cur, length = [], 0
    if cur:
        chunks.append(" ".join(cur))
    return chunks


def prepare_corpus(ctx: Context) -> dict[str, Any]:
    """Write the corpus as JSONL text rows into the run directory (replayed on resume)."""
    cfg = _cfg(ctx)
    root = corpus_dir(cfg)
    out = (ctx.run.root if ctx.run is not None else Path(".")) / "data"
    store = ctx.ports.require("dataset")
    train_rows = [
        {"text": c} for c in chunk_text((root / "train.txt").read_text("utf-8"), cfg.chunk_chars)
    ]
    result: dict[str, Any] = {"train_source": store.save(train_rows, str(out / "train.jsonl"))}
    valid = root / "valid.txt"
    if valid.is_file():
        rows = [{"text": c} for c in chunk_text(valid.read_text("utf-8"), cfg.chunk_chars)]
        result["eval_source"] = store.save(rows, str(out / "valid.jsonl"))
    ctx.vars["corpus_lines"] = (root / "train.txt").read_text("utf-8").splitlines()
    return result


def train_tokenizer(ctx: Context) -> dict[str, Any]:
    """Train (or, on resume, reload) the BPE tokenizer when the adapters can train one."""
    trainer = ctx.ports.extra.get("tokenizer_trainer")
    if trainer is None:
        return {}  # e.g. noop: its byte-level tokenizer needs no training
    cfg = _cfg(ctx)
    save_dir = (ctx.run.root if ctx.run is not None else Path(".")) / "tokenizer"
    tok = trainer(ctx.vars["corpus_lines"], cfg.vocab_size, str(save_dir))
    ctx.ports.tokenizer = tok
    return {"tokenizer_vocab": tok.vocab_size}


def baseline_eval(ctx: Context) -> dict[str, Any]:
    """Validation loss of the untrained model, the bar training has to beat."""
    out = sft.evaluate(ctx)
    if "val_loss" not in out:
        return {}
    return {"val_loss_untrained": out["val_loss"]}


def sample_text(ctx: Context) -> dict[str, Any]:
    """Generate a sample from the trained weights and print it."""
    cfg = _cfg(ctx)
    tok = ctx.ports.require("tokenizer")
    sampler = ctx.ports.require("training").save_weights_and_get_sampling_client("sample")
    prompt = tok.encode(cfg.sample_prompt)
    if tok.bos_token_id is not None:
        prompt = [tok.bos_token_id, *prompt]
    params = SamplingParams(max_tokens=cfg.sample_tokens, temperature=0.8, top_k=50, seed=cfg.seed)
    seq = sampler.sample(ModelInput.from_ints(prompt), 1, params).result().sequences[0]
    text = cfg.sample_prompt + tok.decode(list(seq.tokens))
    if ctx.run is not None:
        from kitchen.io import atomic_write_text

        atomic_write_text(ctx.run.artifacts_dir / "sample.txt", text + "\n")
    print(f"\nsample: {text}\n")
    return {"sample": text}

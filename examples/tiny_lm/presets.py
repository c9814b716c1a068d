"""Preset configs. Command-line flags override them; no preset = the benchmarked default."""

from __future__ import annotations

from typing import Any

from kitchen.workflows.quickstart.config import TINY_LLAMA


def _model(**arch: Any) -> dict[str, Any]:
    config = {**TINY_LLAMA, **arch}
    mode = config.pop("mode", "full")
    spec: dict[str, Any] = {"config": config, "mode": mode}
    if config.pop("gradient_checkpointing", False):
        spec["gradient_checkpointing"] = True
    return spec


#: The default: the configuration measured in README.md (20 epochs < 10 min on 2 CPU cores).
DEFAULT: dict[str, Any] = {
    "vocab_size": 1024,
    "epochs": 20,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "warmup_steps": 20,
    "max_length": 128,
    "chunk_chars": 400,
    "checkpoint_every": 50,
    "model": _model(vocab_size=1024),
}

PRESETS: dict[str, dict[str, Any]] = {
    # seconds on a laptop CPU: a 1-layer model on the first 24k characters (tests, smoke runs)
    "quick": {
        "vocab_size": 320,
        "epochs": 3,
        "batch_size": 8,
        "learning_rate": 5e-3,
        "warmup_steps": 2,
        "max_length": 64,
        "chunk_chars": 200,
        "corpus_chars": 24_000,
        "checkpoint_every": 4,
        "sample_tokens": 16,
        "samples_per_prompt": 1,
        "model": _model(
            vocab_size=320,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
        ),
    },
    # a wider, deeper model, longer context and more epochs (tens of minutes on 2 cores)
    "quality": {
        "vocab_size": 2048,
        "epochs": 30,
        "batch_size": 16,
        "learning_rate": 2e-3,
        "warmup_steps": 40,
        "max_length": 256,
        "chunk_chars": 800,
        "checkpoint_every": 50,
        "sample_tokens": 64,
        "model": _model(
            vocab_size=2048,
            hidden_size=192,
            intermediate_size=512,
            num_hidden_layers=6,
            num_attention_heads=6,
            num_key_value_heads=2,
            max_position_embeddings=256,
        ),
    },
    # small batches, short sequences and gradient checkpointing: lowest peak RSS
    "low-memory": {
        "vocab_size": 512,
        "epochs": 10,
        "batch_size": 4,
        "learning_rate": 2e-3,
        "warmup_steps": 20,
        "max_length": 64,
        "chunk_chars": 200,
        "checkpoint_every": 100,
        "model": _model(
            vocab_size=512,
            hidden_size=96,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            gradient_checkpointing=True,
        ),
    },
}


def resolve(preset: str | None, **flags: Any) -> dict[str, Any]:
    """The preset's config with the flags that were given (not None) on top.

    ``vocab_size`` sets both the tokenizer's and the model's vocabulary.
    """
    base = PRESETS[preset] if preset else DEFAULT
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    config["model"] = {**base["model"], "config": dict(base["model"]["config"])}
    for key, value in flags.items():
        if value is not None:
            config[key] = value
    if flags.get("vocab_size") is not None:
        config["model"]["config"]["vocab_size"] = flags["vocab_size"]
    if flags.get("seed") is not None:  # the model's init too, not only the data order
        config["model"]["seed"] = flags["seed"]
    return config

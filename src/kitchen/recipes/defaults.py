"""Per-adapter defaults shared by the built-in recipes."""

from __future__ import annotations

from typing import Any

#: A small from-scratch Llama for running the built-in recipes on the hf adapters with no
#: downloads (CPU-friendly). Its tokenizer is a BPE trained on the bundled corpus (see
#: ``kitchen.adapters.hf.wiring``). Real use points ``model.path`` at a pretrained model.
TINY_HF_MODEL: dict[str, Any] = {
    "config": {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 172,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "vocab_size": 512,
        "tie_word_embeddings": True,
    },
    "mode": "lora",
    "lora": {"rank": 8, "alpha": 16.0},
}

HF_DEFAULTS: dict[str, dict[str, Any]] = {"hf": {"model": TINY_HF_MODEL}}

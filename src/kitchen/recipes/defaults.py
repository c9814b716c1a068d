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

#: The same tiny model trained in full: the hf default of the rl, dpo and distill recipes.
#: A LoRA adapter on a *randomly initialised* frozen base cannot move its output
#: distribution far (the frozen final norm and tied ~0.16-norm embedding rows cap every
#: logit near +-1.3, under 1 % of the mass for any token of 512), so those objectives, which
#: must sharpen the policy, do not learn; tests/hf/test_hf_rl_dpo_distill.py shows it. With
#: a pretrained model (``model.path`` / ``model.hub_id``) set ``model.mode=lora`` again.
TINY_HF_FULL_MODEL: dict[str, Any] = {"config": TINY_HF_MODEL["config"], "mode": "full"}

HF_FULL_DEFAULTS: dict[str, dict[str, Any]] = {"hf": {"model": TINY_HF_FULL_MODEL}}


def hf_full_defaults(**overrides: Any) -> dict[str, dict[str, Any]]:
    """:data:`HF_FULL_DEFAULTS` plus recipe-specific hf settings (e.g. a learning rate
    that suits AdamW on a transformer rather than the noop model's)."""
    return {"hf": {**HF_FULL_DEFAULTS["hf"], **overrides}}

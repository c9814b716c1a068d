"""A tiny local model directory (from-config Llama + a BPE tokenizer trained on the spot),
laid out as a hub download would leave it. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the cat sat on the mat. the dog ran in the park.",
    "User: hello there\n\nAssistant: hi, how can I help?",
    "a quick brown fox jumps over the lazy dog again and again.",
] * 20


def make_model_dir(root: Path, corpus: list[str] | None = None) -> Path:
    """A local model directory (config + safetensors + tokenizer), as a hub download
    would leave it; nothing is downloaded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from kitchen.adapters.hf.tokenizer import HfTokenizer

    tok = HfTokenizer.train_bpe(corpus or CORPUS, 300)
    tok.save(root)
    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tok.hf),
        bos_token_id=tok.hf.bos_token_id,
        eos_token_id=tok.hf.eos_token_id,
        pad_token_id=tok.hf.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(str(root), safe_serialization=True)
    return root

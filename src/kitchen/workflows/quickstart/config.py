"""Config of the quickstart recipe: a tiny Llama-style model trained from scratch on CPU."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from kitchen.workflows.supervised.config import SupervisedConfig

#: Big enough to learn the bundled corpus visibly, small enough for ~1 minute on 2 cores.
TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


class QuickstartConfig(SupervisedConfig):
    """SFT of a from-scratch model on the bundled corpus, after training its BPE tokenizer."""

    corpus: str = Field("bundled", description="directory with train.txt/valid.txt, or 'bundled'")
    vocab_size: int = Field(
        1024, ge=300, le=1 << 22, description="BPE vocabulary size (tokenizer and model)"
    )
    chunk_chars: int = Field(400, ge=32, description="characters of corpus per training row")
    sample_prompt: str = "The cook"
    sample_tokens: int = Field(40, ge=1)
    dataset: str = ""
    max_length: int = Field(128, ge=2, le=1 << 20)
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(16, ge=1, le=1 << 20)
    learning_rate: float = Field(3e-3, gt=0, le=10)
    warmup_steps: int = Field(10, ge=0)
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    checkpoint_every: int = Field(25, ge=0)
    model: dict[str, Any] = Field(
        default_factory=lambda: {"config": dict(TINY_LLAMA), "mode": "full"},
        description="hf ModelSpec; config.vocab_size follows vocab_size",
    )

    @model_validator(mode="after")
    def _vocab_follows_tokenizer(self) -> QuickstartConfig:
        cfg = self.model.get("config")
        if isinstance(cfg, dict):
            cfg.setdefault("vocab_size", self.vocab_size)
            if cfg["vocab_size"] < self.vocab_size:
                raise ValueError(
                    f"model.config.vocab_size ({cfg['vocab_size']}) is smaller than vocab_size "
                    f"({self.vocab_size}); the model must cover every token id"
                )
        return self

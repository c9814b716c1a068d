"""Preference rows: validation, tokenisation, and a small synthetic set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kitchen.errors import DataError
from kitchen.ports.tokenizer import TokenizerClient
from kitchen.ports.types import Datum
from kitchen.workflows.common.datums import next_token_datum


@dataclass(frozen=True)
class Pair:
    chosen: Datum
    rejected: Datum

    @property
    def chosen_len(self) -> int:
        return int(sum(1 for w in self.chosen.loss_fn_inputs["weights"].data if w))

    @property
    def rejected_len(self) -> int:
        return int(sum(1 for w in self.rejected.loss_fn_inputs["weights"].data if w))


def validate_row(row: Mapping[str, Any], source: str, index: int) -> None:
    """Each row needs a prompt (string or non-empty message list) and two different,
    non-empty string completions ``chosen`` and ``rejected``."""
    if not isinstance(row, Mapping):
        raise DataError(source, index, None, "row must be an object")
    if "prompt" not in row:
        raise DataError(source, index, "prompt", "missing")
    prompt = row["prompt"]
    if isinstance(prompt, list):
        if not prompt or not all(isinstance(m, Mapping) and "content" in m for m in prompt):
            raise DataError(source, index, "prompt", "must be a non-empty list of messages")
    elif not isinstance(prompt, str) or not prompt:
        raise DataError(source, index, "prompt", "must be a non-empty string or message list")
    for key in ("chosen", "rejected"):
        if key not in row:
            raise DataError(source, index, key, "missing")
        if not isinstance(row[key], str) or not row[key]:
            raise DataError(source, index, key, "must be a non-empty string")
    if row["chosen"] == row["rejected"]:
        raise DataError(source, index, "rejected", "is identical to chosen; nothing to prefer")


def _prompt_tokens(tok: TokenizerClient, prompt: Any) -> list[int]:
    if isinstance(prompt, list):
        return list(tok.render_chat(prompt, add_generation_prompt=True).tokens)
    toks = tok.encode(prompt)
    bos = tok.bos_token_id
    return [bos, *toks] if bos is not None else toks


def tokenize_pairs(
    tok: TokenizerClient, rows: Sequence[Mapping[str, Any]], *, source: str, max_length: int
) -> list[Pair]:
    out = []
    eos = tok.eos_token_id
    for i, row in enumerate(rows):
        validate_row(row, source, i)
        p = _prompt_tokens(tok, row["prompt"])
        ds = []
        for key in ("chosen", "rejected"):
            c = tok.encode(row[key])
            if eos is not None:
                c = [*c, eos]
            d = next_token_datum(p + c, [0.0] * len(p) + [1.0] * len(c), max_length)
            if d is None:
                raise DataError(
                    source, i, key, f"nothing left after truncation to max_length={max_length}"
                )
            ds.append(d)
        out.append(Pair(ds[0], ds[1]))
    return out


def synthetic_pairs(n: int = 48, seed: int = 0) -> list[dict[str, Any]]:
    """Arithmetic prompts; the correct sum is chosen over an off-by-one answer."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 4), rng.randint(0, 4)
        wrong = a + b + rng.choice([-1, 1]) if a + b > 0 else 1
        rows.append({"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(wrong)})
    return rows

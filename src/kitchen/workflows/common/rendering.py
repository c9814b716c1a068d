"""Turning dataset rows into token ids and per-token loss weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kitchen.adapters.hf.rows import check_messages
from kitchen.errors import DataError
from kitchen.ports.tokenizer import TokenizerClient, TrainOn


def render_row(
    tokenizer: TokenizerClient,
    row: Mapping[str, Any],
    *,
    train_on: TrainOn,
    source: str,
    index: int,
) -> tuple[list[int], list[float]]:
    """Tokens and 0/1 weights for one row in chat, prompt/completion or text format.

    - ``messages``: rendered by the tokenizer's chat renderer with ``train_on`` masks
    - ``prompt`` + ``completion``: only the completion (and EOS) is trained on
    - ``text``: every token is trained on
    """
    if not isinstance(row, Mapping):
        raise DataError(source, index, None, f"row must be an object, got {type(row).__name__}")
    if "messages" in row:
        messages = row["messages"]
        # The same checks as the hf dataset store's (types, roles, an assistant turn), so
        # a bad chat row names its file, row and field on every adapter family.
        problem = check_messages(messages)
        if problem is not None:
            raise problem.to_error(source, index)
        rendered = tokenizer.render_chat(messages, train_on=train_on)
        return list(rendered.tokens), list(rendered.weights)
    if "prompt" in row and "completion" in row:
        prompt, completion = row["prompt"], row["completion"]
        for name, value in (("prompt", prompt), ("completion", completion)):
            if not isinstance(value, str) or not value:
                raise DataError(source, index, name, "must be a non-empty string")
            if "\x00" in value:
                raise DataError(source, index, name, "contains a NUL byte; is the file text?")
        p = tokenizer.encode(prompt)
        c = tokenizer.encode(completion)
        eos = tokenizer.eos_token_id
        if eos is not None:
            c = [*c, eos]
        return p + c, [0.0] * len(p) + [1.0] * len(c)
    if "text" in row:
        text = row["text"]
        if not isinstance(text, str) or not text:
            raise DataError(source, index, "text", "must be a non-empty string")
        if "\x00" in text:
            raise DataError(source, index, "text", "contains a NUL byte; is the file text?")
        toks = tokenizer.encode(text)
        bos = tokenizer.bos_token_id
        if bos is not None:
            toks = [bos, *toks]
        eos = tokenizer.eos_token_id
        if eos is not None:
            toks = [*toks, eos]
        return toks, [1.0] * len(toks)
    raise DataError(
        source,
        index,
        None,
        f"row has fields {sorted(row)}; expected 'messages', 'prompt'+'completion' or 'text'",
    )

"""``NoopTokenizer``: a deterministic byte-level tokenizer with a simple chat format.

Ids ``0..3`` are specials (pad, bos, eos, role separator); byte ``b`` is id ``4 + b``; ids
from 260 up to ``vocab_size`` are unused (the noop model still predicts over them).

A conversation renders as ``<bos>`` then, per message, ``<sep>role\\n`` + content + ``<eos>``.
``add_generation_prompt`` appends ``<sep>assistant\\n``. Trained-on tokens are message
*content plus its ``<eos>``* (never headers): the last assistant message for
``last_assistant``, every assistant message for ``all_assistant``, and every token for ``all``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kitchen.ports.tokenizer import Message, RenderedChat, TrainOn

PAD, BOS, EOS, SEP = 0, 1, 2, 3
BYTE_OFFSET = 4
MIN_VOCAB = BYTE_OFFSET + 256
_SPECIAL_TEXT = {PAD: "<pad>", BOS: "<bos>", EOS: "<eos>", SEP: "<|sep|>"}
TRAIN_ON = ("last_assistant", "all_assistant", "all")


class NoopTokenizer:
    def __init__(self, vocab_size: int = 512) -> None:
        if vocab_size < MIN_VOCAB:
            raise ValueError(
                f"NoopTokenizer needs vocab_size >= {MIN_VOCAB} (4 specials + 256 bytes), "
                f"got {vocab_size}"
            )
        self._vocab_size = vocab_size
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def eos_token_id(self) -> int | None:
        return EOS

    @property
    def bos_token_id(self) -> int | None:
        return BOS

    @property
    def pad_token_id(self) -> int | None:
        return PAD

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        ids = [BYTE_OFFSET + b for b in text.encode("utf-8")]
        return [BOS, *ids] if add_special_tokens else ids

    def decode(self, tokens: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        out: list[str] = []
        buf = bytearray()
        for t in tokens:
            t = int(t)
            if BYTE_OFFSET <= t < MIN_VOCAB:
                buf.append(t - BYTE_OFFSET)
                continue
            if not skip_special_tokens and t in _SPECIAL_TEXT:
                out.append(buf.decode("utf-8", errors="replace"))
                buf.clear()
                out.append(_SPECIAL_TEXT[t])
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def _header(self, role: str) -> list[int]:
        return [SEP, *self.encode(f"{role}\n")]

    def render_chat(
        self,
        messages: Sequence[Message],
        *,
        train_on: TrainOn = "last_assistant",
        add_generation_prompt: bool = False,
    ) -> RenderedChat:
        if train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
        self.calls.append(("render_chat", {"n": len(messages), "train_on": train_on}))
        last_assistant = max(
            (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1
        )
        everything = 1.0 if train_on == "all" else 0.0
        tokens: list[int] = [BOS]
        weights: list[float] = [everything]
        for i, msg in enumerate(messages):
            role, content = msg.get("role"), msg.get("content")
            if not isinstance(role, str) or not isinstance(content, str):
                raise ValueError(f"message {i} needs string 'role' and 'content', got {msg!r}")
            header = self._header(role)
            body = [*self.encode(content), EOS]
            trained = train_on == "all" or (
                role == "assistant" and (train_on == "all_assistant" or i == last_assistant)
            )
            tokens += header + body
            weights += [everything] * len(header) + [1.0 if trained else 0.0] * len(body)
        if add_generation_prompt:
            header = self._header("assistant")
            tokens += header
            weights += [everything] * len(header)
        return RenderedChat(tuple(tokens), tuple(weights))

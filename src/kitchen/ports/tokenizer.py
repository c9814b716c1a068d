"""The tokenizer port, including chat rendering with train-on masks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

#: Which tokens of a chat carry loss.
TrainOn = Literal["last_assistant", "all_assistant", "all"]

Message = Mapping[str, str]


@dataclass(frozen=True)
class RenderedChat:
    """Token ids for a conversation and a 0/1 weight per token (1 = trained on)."""

    tokens: tuple[int, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.weights):
            raise ValueError("RenderedChat tokens and weights must have equal length")


@runtime_checkable
class TokenizerClient(Protocol):
    """Turns text into token ids and back."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_token_id(self) -> int | None: ...

    @property
    def bos_token_id(self) -> int | None: ...

    @property
    def pad_token_id(self) -> int | None: ...

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]: ...

    def decode(self, tokens: Sequence[int], *, skip_special_tokens: bool = True) -> str: ...

    def render_chat(
        self,
        messages: Sequence[Message],
        *,
        train_on: TrainOn = "last_assistant",
        add_generation_prompt: bool = False,
    ) -> RenderedChat:
        """Render a conversation; weights mark the tokens ``train_on`` selects."""
        ...

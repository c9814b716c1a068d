"""Contract tests for :class:`kitchen.ports.TokenizerClient`.

Abstract fixture: ``tokenizer``.
Class attribute a subclass may override: ``roundtrip_alphabet`` (characters that
``decode(encode(text)) == text`` must hold for; the default is printable ASCII without
whitespace other than single spaces, which byte-level BPE tokenizers round-trip exactly).
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitchen.ports import RenderedChat, TokenizerClient

FIRST_ANSWER = "Seventeen apples"
LAST_ANSWER = "Paris is lovely"
USER_1 = "Count the fruit"
USER_2 = "Name a city"

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": USER_1},
    {"role": "assistant", "content": FIRST_ANSWER},
    {"role": "user", "content": USER_2},
    {"role": "assistant", "content": LAST_ANSWER},
]


def weighted_text(tok: TokenizerClient, rendered: RenderedChat) -> str:
    ids = [t for t, w in zip(rendered.tokens, rendered.weights, strict=True) if w > 0]
    return tok.decode(ids, skip_special_tokens=True)


def unweighted_text(tok: TokenizerClient, rendered: RenderedChat) -> str:
    ids = [t for t, w in zip(rendered.tokens, rendered.weights, strict=True) if w == 0]
    return tok.decode(ids, skip_special_tokens=True)


class TokenizerClientContract:
    roundtrip_alphabet: str = string.ascii_letters + string.digits + string.punctuation + " "

    @pytest.fixture
    def tokenizer(self, tmp_path: Any) -> TokenizerClient:
        raise NotImplementedError("the concrete suite must provide `tokenizer`")

    @settings(
        max_examples=30,
        deadline=None,
        # Every concrete suite is a different `self` for the one mixin method; several
        # suites in one session are expected, not a mistake.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(data=st.data())
    def test_encode_decode_round_trip(self, tokenizer: TokenizerClient, data: Any) -> None:
        text = data.draw(st.text(alphabet=self.roundtrip_alphabet, min_size=1, max_size=60))
        ids = tokenizer.encode(text)
        assert all(isinstance(t, int) for t in ids)
        assert all(0 <= t < tokenizer.vocab_size for t in ids)
        assert tokenizer.decode(ids) == text

    def test_fixed_round_trip_and_vocab(self, tokenizer: TokenizerClient) -> None:
        text = "Hello, world! 12+30=42."
        ids = tokenizer.encode(text)
        assert ids and tokenizer.decode(ids) == text
        assert tokenizer.vocab_size > max(ids)

    def test_special_token_ids_are_in_vocab(self, tokenizer: TokenizerClient) -> None:
        for tid in (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id):
            assert tid is None or 0 <= tid < tokenizer.vocab_size
        assert tokenizer.eos_token_id is not None

    def test_render_chat_lengths_and_binary_weights(self, tokenizer: TokenizerClient) -> None:
        for train_on in ("last_assistant", "all_assistant", "all"):
            r = tokenizer.render_chat(CHAT, train_on=train_on)
            assert isinstance(r, RenderedChat)
            assert len(r.tokens) == len(r.weights) > 0
            assert set(r.weights) <= {0.0, 1.0}
            assert all(0 <= t < tokenizer.vocab_size for t in r.tokens)

    def test_render_chat_last_assistant(self, tokenizer: TokenizerClient) -> None:
        r = tokenizer.render_chat(CHAT, train_on="last_assistant")
        trained = weighted_text(tokenizer, r)
        assert LAST_ANSWER in trained
        for other in (FIRST_ANSWER, USER_1, USER_2):
            assert other not in trained
        assert FIRST_ANSWER in unweighted_text(tokenizer, r)
        # The trained span is one contiguous run at the end of the last message.
        idx = [i for i, w in enumerate(r.weights) if w > 0]
        assert idx == list(range(idx[0], idx[-1] + 1))

    def test_render_chat_all_assistant(self, tokenizer: TokenizerClient) -> None:
        r = tokenizer.render_chat(CHAT, train_on="all_assistant")
        trained = weighted_text(tokenizer, r)
        assert LAST_ANSWER in trained and FIRST_ANSWER in trained
        assert USER_1 not in trained and USER_2 not in trained
        last = tokenizer.render_chat(CHAT, train_on="last_assistant")
        assert r.tokens == last.tokens
        assert sum(r.weights) > sum(last.weights)

    def test_render_chat_all(self, tokenizer: TokenizerClient) -> None:
        r = tokenizer.render_chat(CHAT, train_on="all")
        assert all(w == 1.0 for w in r.weights)
        assert r.tokens == tokenizer.render_chat(CHAT, train_on="last_assistant").tokens

    def test_add_generation_prompt(self, tokenizer: TokenizerClient) -> None:
        msgs = CHAT[:4]
        plain = tokenizer.render_chat(msgs, train_on="last_assistant")
        gen = tokenizer.render_chat(msgs, train_on="last_assistant", add_generation_prompt=True)
        assert len(gen.tokens) > len(plain.tokens)
        assert gen.tokens[: len(plain.tokens)] == plain.tokens
        # The generation prompt itself is never trained on.
        assert gen.weights[: len(plain.tokens)] == plain.weights
        assert all(w == 0 for w in gen.weights[len(plain.tokens) :])
        user_only = tokenizer.render_chat(CHAT[:2], add_generation_prompt=True)
        assert sum(user_only.weights) == 0

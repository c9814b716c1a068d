"""HfTokenizer: deterministic BPE training, lossless round-trips, chat masks, save/load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from kitchen.adapters.hf.tokenizer import SPECIAL_TOKENS, HfTokenizer
from kitchen.data import corpus_path
from kitchen.errors import UsageError
from kitchen.ports import TokenizerClient
from kitchen.workflows.common.rendering import render_row

VOCAB = 600

TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|eos|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "How do I boil pasta?"},
    {"role": "assistant", "content": "Salt the water well."},
    {"role": "user", "content": "And then?"},
    {"role": "assistant", "content": "Taste it early."},
]


@pytest.fixture(scope="module")
def tok() -> HfTokenizer:
    return HfTokenizer.train_bpe(corpus_path("train.txt"), VOCAB)


def _fingerprint(t: HfTokenizer) -> str:
    return json.dumps(json.loads(t.hf.backend_tokenizer.to_str())["model"], sort_keys=True)


def test_training_is_deterministic(tok: HfTokenizer) -> None:
    again = HfTokenizer.train_bpe(corpus_path("train.txt"), VOCAB)
    assert _fingerprint(again) == _fingerprint(tok)
    # And in a fresh process with another hash seed.
    code = (
        "import json,sys\n"
        "from kitchen.adapters.hf.tokenizer import HfTokenizer\n"
        "from kitchen.data import corpus_path\n"
        f"t = HfTokenizer.train_bpe(corpus_path('train.txt'), {VOCAB})\n"
        "m = json.loads(t.hf.backend_tokenizer.to_str())['model']\n"
        "sys.stdout.write(json.dumps(m, sort_keys=True))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout == _fingerprint(tok)


def test_vocab_and_special_tokens(tok: HfTokenizer) -> None:
    assert isinstance(tok, TokenizerClient)
    assert tok.vocab_size == VOCAB
    assert [tok.token_id(s) for s in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    # The corpus taught it whole words.
    assert len(tok.encode(" kitchen")) == 1
    assert len(tok.encode("The onions started to burn")) < 10


def test_training_from_iterable_and_too_small_vocab() -> None:
    t = HfTokenizer.train_bpe(["abc abc abd"] * 5, 300)
    assert t.decode(t.encode("abc abd")) == "abc abd"
    with pytest.raises(UsageError, match="too small"):
        HfTokenizer.train_bpe(["x"], 100)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_encode_decode_roundtrip(tok: HfTokenizer, text: str) -> None:
    if "<|" in text:
        return
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def _trained_text(tok: HfTokenizer, tokens: tuple[int, ...], weights: tuple[float, ...]) -> str:
    return tok.decode(
        [t for t, w in zip(tokens, weights, strict=True) if w], skip_special_tokens=False
    )


def test_chat_masks_three_modes(tok: HfTokenizer) -> None:
    last = tok.render_chat(CHAT, train_on="last_assistant")
    every = tok.render_chat(CHAT, train_on="all_assistant")
    full = tok.render_chat(CHAT, train_on="all")
    assert last.tokens == every.tokens == full.tokens
    assert _trained_text(tok, *_tw(last)) == "Taste it early.<|eos|>"
    assert _trained_text(tok, *_tw(every)) == "Salt the water well.<|eos|>Taste it early.<|eos|>"
    assert all(w == 1.0 for w in full.weights)
    # Layout: <|role|> content <|eos|> per message; headers never trained in assistant modes.
    assistant = tok.token_id("<|assistant|>")
    for r in (last, every):
        for t, w in zip(r.tokens, r.weights, strict=True):
            if t == assistant:
                assert w == 0.0
    assert tok.decode(list(full.tokens), skip_special_tokens=False) == (
        "<|system|>Be brief.<|eos|><|user|>How do I boil pasta?<|eos|>"
        "<|assistant|>Salt the water well.<|eos|><|user|>And then?<|eos|>"
        "<|assistant|>Taste it early.<|eos|>"
    )
    gen = tok.render_chat(CHAT[:2], add_generation_prompt=True)
    assert gen.tokens[-1] == assistant and not any(gen.weights)


def _tw(r: object) -> tuple[tuple[int, ...], tuple[float, ...]]:
    return r.tokens, r.weights  # type: ignore[attr-defined]


def test_chat_template_path_matches_builtin(tok: HfTokenizer, tmp_path: Path) -> None:
    templated = HfTokenizer.train_bpe(corpus_path("train.txt"), VOCAB, chat_template=TEMPLATE)
    assert templated.chat_template
    for mode in ("last_assistant", "all_assistant", "all"):
        assert templated.render_chat(CHAT, train_on=mode) == tok.render_chat(CHAT, train_on=mode)
    assert templated.render_chat(CHAT[:2], add_generation_prompt=True) == tok.render_chat(
        CHAT[:2], add_generation_prompt=True
    )
    templated.save(tmp_path / "tok")
    loaded = HfTokenizer.load(tmp_path / "tok")
    assert loaded.chat_template == TEMPLATE
    assert loaded.render_chat(CHAT) == templated.render_chat(CHAT)


def test_template_spans_with_merged_boundaries(tok: HfTokenizer) -> None:
    """A template without special tokens: masks still cover exactly the reply text."""
    plain = HfTokenizer.train_bpe(
        corpus_path("train.txt"),
        VOCAB,
        chat_template=(
            "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
        ),
    )
    r = plain.render_chat(CHAT, train_on="all_assistant")
    trained = _trained_text(plain, r.tokens, r.weights)
    assert trained == " Salt the water well.\n Taste it early.\n"
    assert "user" not in trained and "How do I" not in trained


def test_non_incremental_template_is_refused(tok: HfTokenizer) -> None:
    weird = HfTokenizer.train_bpe(
        ["abc"] * 5,
        300,
        chat_template=(
            "{{ messages | length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
        ),
    )
    with pytest.raises(UsageError, match="incrementally"):
        weird.render_chat(CHAT)


def test_prompt_completion_and_text_match_render_row(tok: HfTokenizer) -> None:
    pc = tok.render_prompt_completion("Boil the", " pasta.")
    assert pc.tokens[-1] == tok.eos_token_id
    assert tok.decode([t for t, w in zip(pc.tokens, pc.weights, strict=True) if w]) == " pasta."
    row = render_row(
        tok, {"prompt": "Boil the", "completion": " pasta."}, train_on="all", source="x", index=0
    )
    assert (tuple(row[0]), tuple(row[1])) == (pc.tokens, pc.weights)
    txt = tok.render_text("Stir the soup.")
    assert txt.tokens[0] == tok.bos_token_id and txt.tokens[-1] == tok.eos_token_id
    assert all(txt.weights)
    row = render_row(tok, {"text": "Stir the soup."}, train_on="all", source="x", index=0)
    assert (tuple(row[0]), tuple(row[1])) == (txt.tokens, txt.weights)
    chat = render_row(tok, {"messages": CHAT}, train_on="last_assistant", source="x", index=0)
    assert tuple(chat[0]) == tok.render_chat(CHAT).tokens


def test_save_load_roundtrip(tok: HfTokenizer, tmp_path: Path) -> None:
    out = tok.save(tmp_path / "t")
    assert sorted(p.name for p in Path(out).iterdir()) == [
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    loaded = HfTokenizer.from_pretrained(out)
    assert loaded.vocab_size == tok.vocab_size
    assert (loaded.eos_token_id, loaded.bos_token_id, loaded.pad_token_id) == (2, 1, 0)
    text = "Cooks use a colander to drain pasta."
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.render_chat(CHAT) == tok.render_chat(CHAT)
    with pytest.raises(UsageError, match="local directories only"):
        HfTokenizer.load(tmp_path / "missing")

"""``HfTokenizer``: the TokenizerClient port over a ``transformers`` fast tokenizer.

Build one from a local directory (:meth:`HfTokenizer.load` / ``from_pretrained``), from an
in-memory ``tokenizers.Tokenizer`` (:meth:`HfTokenizer.from_tokenizer`), or train a
byte-level BPE on a corpus (:meth:`HfTokenizer.train_bpe`). Nothing is ever downloaded:
loading uses ``local_files_only=True``.

Rendering (all return :class:`~kitchen.ports.RenderedChat`, tokens plus 0/1 weights):

- :meth:`render_chat` uses the tokenizer's chat template when it has one, else kitchen's
  built-in format, per message ``<|role|> content <|eos|>`` (and ``<|assistant|>`` for the
  generation prompt). Role headers never carry loss; the content of a trained assistant
  message and its end-of-turn tokens (``<|eos|>``, or whatever the template emits after
  the content) do. ``train_on``: ``last_assistant`` (default), ``all_assistant``, ``all``
  (every token). With a template, each message's span is found by rendering the
  conversation incrementally (prefix by prefix, and with the generation prompt to locate
  the assistant header) and mapping character spans to tokens via offsets; a token that
  straddles the header/content boundary (e.g. ``" Salt"`` after ``"assistant:"``) is
  trained, since it is the token that produces the content.
- :meth:`render_prompt_completion`: prompt tokens weight 0, completion + eos weight 1.
- :meth:`render_text`: ``bos + text + eos``, all weight 1.

These match :func:`kitchen.workflows.common.rendering.render_row`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kitchen.errors import UsageError
from kitchen.io import atomic_write_bytes
from kitchen.optional import require
from kitchen.ports.tokenizer import Message, RenderedChat, TrainOn

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
#: Special tokens of a kitchen-trained BPE, in id order (``<|pad|>`` is id 0).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, *ROLE_TOKENS.values())

TRAIN_ON: tuple[str, ...] = ("last_assistant", "all_assistant", "all")


class HfTokenizer:
    """Wraps a ``transformers`` tokenizer (fast, for offsets) as a TokenizerClient."""

    def __init__(self, tokenizer: Any) -> None:
        if isinstance(tokenizer, str | os.PathLike):
            tokenizer = _load_hf(Path(tokenizer))
        self.hf = tokenizer

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, chat_template: str | None = None) -> HfTokenizer:
        """Wrap an in-memory ``tokenizers.Tokenizer``; kitchen's special tokens are wired
        as bos/eos/pad when the vocabulary has them."""
        transformers = require("transformers", "hf")
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        kwargs = {
            name: tok
            for name, tok in (("bos_token", BOS), ("eos_token", EOS), ("pad_token", PAD))
            if tok in vocab
        }
        hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, **kwargs)
        if chat_template is not None:
            hf.chat_template = chat_template
        return cls(hf)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> HfTokenizer:
        """Load from a local directory (``tokenizer.json`` + config); never downloads."""
        return cls(_load_hf(Path(directory)))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str]) -> HfTokenizer:
        """Alias of :meth:`load` (a local path only, despite the name)."""
        return cls.load(directory)

    @classmethod
    def train_bpe(
        cls,
        corpus: Iterable[str] | str | os.PathLike[str],
        vocab_size: int,
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
        min_frequency: int = 2,
        *,
        chat_template: str | None = None,
    ) -> HfTokenizer:
        """Train a byte-level BPE tokenizer (GPT-2 style, no normaliser, lossless).

        ``corpus`` is an iterable of texts, or a path to a text file or a directory of
        ``*.txt`` files (read as lines). ``special_tokens`` get the first ids, in order.
        Any byte sequence is representable (the 256 byte symbols are the initial alphabet),
        so ``decode(encode(s)) == s`` for every string without special-token text.

        Deterministic: the same corpus (same texts in the same order), ``vocab_size``,
        ``special_tokens``, ``min_frequency`` and ``tokenizers`` version give the same
        vocabulary and merges, in any process. The ``tokenizers`` BPE trainer breaks
        count ties by pair order rather than hash order; kitchen's test checks it across
        two processes with different hash seeds.
        """
        tk = require("tokenizers", "hf")
        if vocab_size < 256 + len(special_tokens):
            raise UsageError(
                f"vocab_size={vocab_size} is too small for a byte-level BPE: it needs at least "
                f"256 byte symbols + {len(special_tokens)} special tokens"
            )
        texts = _corpus_texts(corpus)
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(special_tokens),
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return cls.from_tokenizer(tok, chat_template=chat_template)

    def save(self, directory: str | os.PathLike[str]) -> str:
        """Write ``tokenizer.json`` and its config into ``directory``, each file atomically."""
        dest = Path(directory)
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest, prefix=".tok-") as tmp:
            self.hf.save_pretrained(tmp)
            for f in sorted(Path(tmp).iterdir()):
                if f.is_file():
                    atomic_write_bytes(dest / f.name, f.read_bytes())
        return str(dest)

    # -- port -------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    @property
    def eos_token_id(self) -> int | None:
        return _opt_int(self.hf.eos_token_id)

    @property
    def bos_token_id(self) -> int | None:
        return _opt_int(self.hf.bos_token_id)

    @property
    def pad_token_id(self) -> int | None:
        return _opt_int(self.hf.pad_token_id)

    @property
    def chat_template(self) -> str | None:
        return getattr(self.hf, "chat_template", None) or None

    def token_id(self, token: str) -> int | None:
        tid = self.hf.convert_tokens_to_ids(token)
        return None if tid is None or tid == self.hf.unk_token_id else int(tid)

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, tokens: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return str(self.hf.decode(list(tokens), skip_special_tokens=skip_special_tokens))

    def render_chat(
        self,
        messages: Sequence[Message],
        *,
        train_on: TrainOn = "last_assistant",
        add_generation_prompt: bool = False,
    ) -> RenderedChat:
        if train_on not in TRAIN_ON:
            raise UsageError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
        msgs = [dict(m) for m in messages]
        trained = _trained_messages(msgs, train_on)
        if self.chat_template:
            return self._render_template(msgs, trained, train_on, add_generation_prompt)
        return self._render_builtin(msgs, trained, train_on, add_generation_prompt)

    def render_prompt_completion(self, prompt: str, completion: str) -> RenderedChat:
        p = self.encode(prompt)
        c = self.encode(completion)
        eos = self.eos_token_id
        if eos is not None:
            c.append(eos)
        return RenderedChat(tuple(p + c), (0.0,) * len(p) + (1.0,) * len(c))

    def render_text(self, text: str) -> RenderedChat:
        toks = self.encode(text)
        if self.bos_token_id is not None:
            toks.insert(0, self.bos_token_id)
        if self.eos_token_id is not None:
            toks.append(self.eos_token_id)
        return RenderedChat(tuple(toks), (1.0,) * len(toks))

    # -- rendering internals ------------------------------------------------------------------
    def _special(self, text: str) -> list[int]:
        """One id for a special token in the vocabulary, else the text's encoding."""
        tid = self.token_id(text)
        return [tid] if tid is not None else self.encode(text)

    def _render_builtin(
        self,
        msgs: list[dict[str, Any]],
        trained: set[int],
        train_on: TrainOn,
        add_generation_prompt: bool,
    ) -> RenderedChat:
        eos = [self.eos_token_id] if self.eos_token_id is not None else self._special(EOS)
        tokens: list[int] = []
        weights: list[float] = []
        everything = train_on == "all"
        for i, m in enumerate(msgs):
            header = self._special(ROLE_TOKENS.get(m["role"], f"<|{m['role']}|>"))
            body = self.encode(m["content"]) + eos
            tokens += header + body
            weights += [1.0 if everything else 0.0] * len(header)
            weights += [1.0 if everything or i in trained else 0.0] * len(body)
        if add_generation_prompt:
            header = self._special(ROLE_TOKENS["assistant"])
            tokens += header
            weights += [1.0 if everything else 0.0] * len(header)
        return RenderedChat(tuple(tokens), tuple(weights))

    def _render_template(
        self,
        msgs: list[dict[str, Any]],
        trained: set[int],
        train_on: TrainOn,
        add_generation_prompt: bool,
    ) -> RenderedChat:
        def text_of(prefix: list[dict[str, Any]], gen: bool) -> str:
            if not prefix:
                return ""
            return str(
                self.hf.apply_chat_template(prefix, tokenize=False, add_generation_prompt=gen)
            )

        full = text_of(msgs, add_generation_prompt)
        spans: list[tuple[int, int]] = []  # char spans of trained content + end-of-turn
        for i in sorted(trained):
            start_text = text_of(msgs[:i], True)  # ends with the assistant header
            end_text = text_of(msgs[: i + 1], False)
            if not (full.startswith(end_text) and end_text.startswith(start_text)):
                raise UsageError(
                    "the tokenizer's chat template does not render conversations "
                    "incrementally (a prefix of the conversation is not a prefix of its "
                    "text), so assistant masks cannot be located; use a template without "
                    "history-dependent rewriting or clear the tokenizer's chat_template"
                )
            spans.append((len(start_text), len(end_text)))
        enc = self.hf(full, add_special_tokens=False, return_offsets_mapping=True)
        tokens = list(enc["input_ids"])
        if train_on == "all":
            return RenderedChat(tuple(tokens), (1.0,) * len(tokens))
        weights = []
        for start, end in enc["offset_mapping"]:
            # A token is trained when it overlaps a trained span: a token that straddles
            # the header/content boundary (" Salt" after "assistant:") produces content.
            inside = any(
                (start < b and end > a) if end > start else a <= start < b for a, b in spans
            )
            weights.append(1.0 if inside else 0.0)
        return RenderedChat(tuple(tokens), tuple(weights))

    def __repr__(self) -> str:
        return f"HfTokenizer(vocab_size={self.vocab_size}, template={bool(self.chat_template)})"


def _trained_messages(msgs: list[dict[str, Any]], train_on: TrainOn) -> set[int]:
    assistant = [i for i, m in enumerate(msgs) if m.get("role") == "assistant"]
    if train_on == "last_assistant":
        return set(assistant[-1:])
    return set(assistant)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _load_hf(directory: Path) -> Any:
    if not directory.is_dir():
        raise UsageError(
            f"tokenizer directory {directory} does not exist; kitchen loads tokenizers from "
            "local directories only (save one with HfTokenizer.save or download it first)"
        )
    transformers = require("transformers", "hf")
    return transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def _corpus_texts(corpus: Iterable[str] | str | os.PathLike[str]) -> list[str]:
    if isinstance(corpus, str | os.PathLike):
        path = Path(corpus)
        if not path.exists():
            raise UsageError(f"corpus {path} does not exist")
        files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise UsageError(f"corpus directory {path} has no *.txt files")
        return [line for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    texts = list(corpus)
    if not all(isinstance(t, str) for t in texts):
        raise UsageError("corpus must be an iterable of strings or a path to text files")
    return texts

"""Data shipped with kitchen, and data-preparation stages.

``corpus/`` holds a small generated English corpus about cooking (``train.txt``,
``valid.txt``: one passage per line; ``chat.jsonl``: short chat conversations with
``messages``), regenerated deterministically by ``python -m kitchen.data.make_corpus``.
It is meant for tests and examples: tokenizer training, tiny language models, SFT.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CORPUS_FILES = ("train.txt", "valid.txt", "chat.jsonl")


def corpus_path(name: str) -> Path:
    """Path of a bundled corpus file: ``train.txt``, ``valid.txt`` or ``chat.jsonl``."""
    ref = resources.files(__name__) / "corpus" / name
    path = Path(str(ref))
    if name not in CORPUS_FILES or not path.is_file():
        raise FileNotFoundError(
            f"no bundled corpus file {name!r}; available: {', '.join(CORPUS_FILES)} "
            "(regenerate them with `python -m kitchen.data.make_corpus`)"
        )
    return path


__all__ = ["CORPUS_FILES", "corpus_path"]

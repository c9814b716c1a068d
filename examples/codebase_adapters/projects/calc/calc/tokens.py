"""Split an arithmetic expression into tokens."""

from __future__ import annotations

OPERATORS = "+-*/()"


def tokenize(text: str) -> list[str]:
    """Numbers and operators of ``text``, whitespace dropped."""
    out: list[str] = []
    number = ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
            continue
        if number:
            out.append(number)
            number = ""
        if ch in OPERATORS:
            out.append(ch)
        elif not ch.isspace():
            raise ValueError(f"unexpected character {ch!r}")
    if number:
        out.append(number)
    return out

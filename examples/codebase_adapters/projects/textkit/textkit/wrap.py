"""Word wrapping and counting."""

from collections import Counter


def wrap(text: str, width: int = 72) -> list[str]:
    """Greedy word wrap to lines of at most ``width`` characters."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def word_counts(text: str, top: int = 10) -> list[tuple[str, int]]:
    """The ``top`` most common lower-cased words."""
    words = [w.strip(".,;:!?\"'").lower() for w in text.split()]
    return Counter(w for w in words if w).most_common(top)


class Paragraphs:
    """Iterate over blank-line separated paragraphs."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __iter__(self):
        block: list[str] = []
        for line in self.text.splitlines():
            if line.strip():
                block.append(line.strip())
            elif block:
                yield " ".join(block)
                block = []
        if block:
            yield " ".join(block)

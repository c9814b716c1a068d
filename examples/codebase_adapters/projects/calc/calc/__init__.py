"""calc: a tiny expression calculator (sample project for the codebase_adapters example)."""

from calc.evaluate import evaluate
from calc.tokens import tokenize

__all__ = ["evaluate", "tokenize"]

"""An arithmetic environment with an exactly-checked answer.

Problems are ``a+b=`` (and optionally ``a-b=``) with operands in ``[min_operand,
max_operand]``; the reward is 1.0 when the decoded answer equals the result exactly, else 0.
The defaults keep it learnable by a tiny model in a minute on CPU: single-digit operands in
{0, 1}, so the answer is one of three digit tokens and ``max_tokens=1``, and an optional
small ``format_reward`` for any integer answer guides exploration out of a uniform start. Raising
``max_operand`` (and ``max_tokens``) makes it a real arithmetic task.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kitchen.ports.tokenizer import TokenizerClient
from kitchen.rl.env import (
    RepeatedEnvGroup,
    SingleTurnEnv,
    StopCondition,
    default_stop,
    encode_prompt,
)
from kitchen.rl.rewards import exact_match

_INT = re.compile(r"^-?[0-9]+$")


def arithmetic_reward(text: str, info: Mapping[str, Any]) -> float:
    """1.0 for the exact answer. A wrong integer earns ``info["format_reward"]`` scaled by
    closeness, ``format_reward·max(0, 1 - |guess - answer|/10)`` (0 by default); else 0."""
    if exact_match(text, info):
        return 1.0
    shaping = float(info.get("format_reward", 0.0))
    if not shaping or not _INT.match(text.strip()):
        return 0.0
    dist = abs(int(text.strip()) - int(str(info["answer"])))
    return shaping * max(0.0, 1.0 - dist / 10.0)


@dataclass(frozen=True)
class Problem:
    a: int
    b: int
    op: str

    @property
    def text(self) -> str:
        return f"{self.a}{self.op}{self.b}="

    @property
    def answer(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b


def problems(
    n: int, *, seed: int, min_operand: int = 0, max_operand: int = 1, ops: Sequence[str] = ("+",)
) -> list[Problem]:
    """``n`` problems, a pure function of the arguments."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = rng.randint(min_operand, max_operand)
        b = rng.randint(min_operand, max_operand)
        out.append(Problem(a, b, rng.choice(list(ops))))
    return out


@dataclass
class ArithmeticEnvSpec:
    """Everything needed to build the env groups of one batch."""

    tokenizer: TokenizerClient
    group_size: int = 4
    max_tokens: int = 1
    chat: bool = False
    #: Partial credit for answering with *some* integer: exploration help for tiny models
    #: whose first samples are spread over the whole vocabulary. 0 = pure exact check.
    format_reward: float = 0.0

    def stop(self) -> StopCondition:
        return default_stop(self.tokenizer, self.max_tokens)

    def group(self, problem: Problem) -> RepeatedEnvGroup:
        prompt = encode_prompt(self.tokenizer, problem.text, chat=self.chat)
        stop = self.stop()
        info = {
            "answer": str(problem.answer),
            "problem": problem.text,
            "format_reward": self.format_reward,
        }
        tok = self.tokenizer

        def make() -> SingleTurnEnv:
            return SingleTurnEnv(prompt, stop, arithmetic_reward, tok, info)

        return RepeatedEnvGroup(make, self.group_size, tag=problem.text)

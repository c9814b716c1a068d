"""Environments for RL: the ``Env`` / ``EnvGroupBuilder`` interface (tinker-cookbook's shape).

An :class:`Env` is one episode. ``initial_observation()`` gives the first prompt (token ids)
and a stop condition; ``step(action_tokens)`` scores an action and either ends the episode
or returns the next observation (multi-turn). An :class:`EnvGroupBuilder` makes the group of
envs whose rewards are compared with each other (GRPO/RLOO groups: usually ``group_size``
copies of one problem). Reward functions are plain callables.

Envs are synchronous and cheap to build; rollouts submit all sampling calls of a turn before
awaiting any, so sampling overlaps across the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kitchen.ports.tokenizer import TokenizerClient
from kitchen.ports.types import ModelInput


@dataclass(frozen=True)
class StopCondition:
    """When a sampled action ends: after ``max_tokens`` or at one of the ``stop`` token ids."""

    max_tokens: int
    stop: tuple[int, ...] = ()


@dataclass(frozen=True)
class StepResult:
    reward: float
    episode_done: bool
    #: The full context for the next turn (multi-turn envs); None when the episode is done.
    next_observation: ModelInput | None = None
    next_stop: StopCondition | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Env(Protocol):
    """One episode of an environment."""

    def initial_observation(self) -> tuple[ModelInput, StopCondition]: ...

    def step(self, action: Sequence[int]) -> StepResult: ...


@runtime_checkable
class EnvGroupBuilder(Protocol):
    """Makes a group of envs whose returns are centred against each other."""

    def make_envs(self) -> Sequence[Env]: ...


#: ``reward(text, info) -> float``: the plain-callable reward used by the example envs.
RewardFn = Callable[[str, Mapping[str, Any]], float]


def encode_prompt(tokenizer: TokenizerClient, text: str, *, chat: bool = False) -> ModelInput:
    """Token ids for a prompt: raw text (with BOS when the tokenizer has one) or a one-turn chat
    rendered with the generation prompt."""
    if chat:
        rendered = tokenizer.render_chat(
            [{"role": "user", "content": text}], add_generation_prompt=True
        )
        return ModelInput.from_ints(rendered.tokens)
    toks = tokenizer.encode(text)
    bos = tokenizer.bos_token_id
    if bos is not None:
        toks = [bos, *toks]
    return ModelInput.from_ints(toks)


def default_stop(tokenizer: TokenizerClient, max_tokens: int) -> StopCondition:
    eos = tokenizer.eos_token_id
    return StopCondition(max_tokens=max_tokens, stop=(eos,) if eos is not None else ())


class SingleTurnEnv:
    """A prompt, one sampled answer, a reward from ``reward_fn(decoded_answer, info)``."""

    def __init__(
        self,
        prompt: ModelInput,
        stop: StopCondition,
        reward_fn: RewardFn,
        tokenizer: TokenizerClient,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.prompt = prompt
        self.stop = stop
        self.reward_fn = reward_fn
        self.tokenizer = tokenizer
        self.info = dict(info or {})

    def initial_observation(self) -> tuple[ModelInput, StopCondition]:
        return self.prompt, self.stop

    def step(self, action: Sequence[int]) -> StepResult:
        text = self.tokenizer.decode(list(action), skip_special_tokens=True)
        reward = float(self.reward_fn(text, self.info))
        return StepResult(reward=reward, episode_done=True, metrics={"correct": float(reward > 0)})


class MultiTurnEnv:
    """A scripted multi-turn episode: after each action the env appends its reply.

    ``turns`` are (user_text, reward_fn) pairs; the observation after turn ``k`` is the whole
    conversation so far (prompt, action, reply, ...), so rollouts build one growing sequence
    and the datum builder merges the turns into a single datum.
    """

    def __init__(
        self,
        tokenizer: TokenizerClient,
        turns: Sequence[tuple[str, RewardFn]],
        max_tokens: int,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if not turns:
            raise ValueError("MultiTurnEnv needs at least one turn")
        self.tokenizer = tokenizer
        self.turns = list(turns)
        self.stop = default_stop(tokenizer, max_tokens)
        self.info = dict(info or {})
        self._k = 0
        self._context: list[int] = []

    def initial_observation(self) -> tuple[ModelInput, StopCondition]:
        self._k = 0
        self._context = encode_prompt(self.tokenizer, self.turns[0][0]).to_ints()
        return ModelInput.from_ints(self._context), self.stop

    def step(self, action: Sequence[int]) -> StepResult:
        text = self.tokenizer.decode(list(action), skip_special_tokens=True)
        reward = float(self.turns[self._k][1](text, self.info))
        self._context = [*self._context, *action]
        self._k += 1
        if self._k >= len(self.turns):
            return StepResult(reward=reward, episode_done=True)
        self._context += self.tokenizer.encode(self.turns[self._k][0])
        return StepResult(
            reward=reward,
            episode_done=False,
            next_observation=ModelInput.from_ints(self._context),
            next_stop=self.stop,
        )


@dataclass
class RepeatedEnvGroup:
    """``group_size`` fresh envs from ``make_env`` (one problem, many attempts)."""

    make_env: Callable[[], Env]
    group_size: int
    tag: str = ""

    def make_envs(self) -> Sequence[Env]:
        return [self.make_env() for _ in range(self.group_size)]

"""Offline step-wise RL on stored teacher trajectories.

Each stored trajectory is a list of steps ``{"observation": str, "action": str|object}``
(optionally ``"verified": bool`` per step or per trajectory). A verifier keeps only the
verified steps; every kept step becomes a single-turn env: the policy proposes an action for
the stored observation and a pluggable per-step reward compares it with the teacher's
(verified) action — by default the action-similarity reward. No live environment is needed.

Rows may also be flat steps (``{"observation", "action"}``) rather than trajectories.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kitchen.errors import DataError
from kitchen.ports.tokenizer import TokenizerClient
from kitchen.rl.env import RepeatedEnvGroup, RewardFn, SingleTurnEnv, default_stop, encode_prompt
from kitchen.rl.rewards import load_callable, parse_action

#: ``verifier(step, trajectory) -> bool``.
Verifier = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]


def verified_flag(step: Mapping[str, Any], trajectory: Mapping[str, Any]) -> bool:
    """Default verifier: the step's (else the trajectory's) ``verified`` flag, True if absent,
    and the teacher action must parse as a structured action."""
    flag = step.get("verified", trajectory.get("verified", True))
    return bool(flag) and parse_action(step["action"]) is not None


def get_verifier(name: str | None) -> Verifier:
    if name in (None, "", "verified_flag"):
        return verified_flag
    if name == "none":
        return lambda step, traj: True
    return load_callable(name)


@dataclass(frozen=True)
class OfflineStep:
    observation: str
    action: str
    trajectory: int
    index: int


def verified_steps(
    rows: Iterable[Mapping[str, Any]], verifier: Verifier, *, source: str = "offline"
) -> tuple[list[OfflineStep], dict[str, float]]:
    """The steps ``verifier`` accepts, and counts (``steps_total``, ``steps_kept``)."""
    kept: list[OfflineStep] = []
    total = 0
    for r, row in enumerate(rows):
        steps = row.get("steps")
        traj: Mapping[str, Any]
        if steps is None:
            steps, traj = [row], {}
        else:
            traj = row
        if not isinstance(steps, list):
            raise DataError(source, r, "steps", "must be a list of {observation, action}")
        for i, step in enumerate(steps):
            total += 1
            for key in ("observation", "action"):
                if key not in step:
                    raise DataError(source, r, f"steps[{i}].{key}", "missing")
            if not isinstance(step["observation"], str) or not step["observation"]:
                raise DataError(source, r, f"steps[{i}].observation", "must be a non-empty string")
            if verifier(step, traj):
                action = step["action"]
                if not isinstance(action, str):
                    action = json.dumps(action, sort_keys=True, separators=(",", ":"))
                kept.append(OfflineStep(step["observation"], action, r, i))
    return kept, {"offline/steps_total": float(total), "offline/steps_kept": float(len(kept))}


def step_group(
    step: OfflineStep,
    tokenizer: TokenizerClient,
    reward: RewardFn,
    *,
    group_size: int,
    max_tokens: int,
    chat: bool = False,
) -> RepeatedEnvGroup:
    prompt = encode_prompt(tokenizer, step.observation, chat=chat)
    stop = default_stop(tokenizer, max_tokens)
    # the observation too: a reward may check the action against it (e.g. apply it)
    info = {"reference": step.action, "answer": step.action, "observation": step.observation}

    def make() -> SingleTurnEnv:
        return SingleTurnEnv(prompt, stop, reward, tokenizer, info)

    return RepeatedEnvGroup(make, group_size, tag=f"{step.trajectory}/{step.index}")


def synthetic_trajectories(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Tiny edit-action trajectories (some unverified) for demos and tests."""
    import random

    rng = random.Random(seed)
    names = ["a", "b", "x", "y"]
    rows: list[dict[str, Any]] = []
    for t in range(n):
        steps = []
        for _ in range(2):
            src, dst = rng.sample(names, 2)
            steps.append(
                {
                    "observation": f"rename {src} to {dst}",
                    "action": {"op": "rename", "from": src, "to": dst},
                    "verified": rng.random() > 0.2,
                }
            )
        rows.append({"id": t, "steps": steps})
    return rows


def as_rows(
    data: Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    return [dict(r) for r in data]

"""Reward functions: plain callables ``(text, info) -> float``.

- :func:`exact_match`: 1.0 when the answer equals ``info["answer"]`` exactly (after strip).
- :func:`action_similarity`: the step-wise reward for structured actions,
  ``R = 0.7·S_field + 0.3·S_str`` clipped to ``[-0.2, 1]``, and ``-0.2`` for an invalid action.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from typing import Any

INVALID_ACTION_REWARD = -0.2


def exact_match(text: str, info: Mapping[str, Any]) -> float:
    return 1.0 if text.strip() == str(info["answer"]).strip() else 0.0


def parse_action(action: Any) -> dict[str, Any] | None:
    """A structured action as a dict, or None when it is not a JSON object."""
    if isinstance(action, Mapping):
        return dict(action)
    if not isinstance(action, str):
        return None
    try:
        obj = json.loads(action.strip())
    except (ValueError, TypeError):
        return None
    return obj if isinstance(obj, dict) else None


def canonical(action: Mapping[str, Any]) -> str:
    return json.dumps(action, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def field_similarity(pred: Mapping[str, Any], ref: Mapping[str, Any]) -> float:
    """Share of fields (over the union of both actions' keys) whose values are equal."""
    keys = set(pred) | set(ref)
    if not keys:
        return 1.0
    same = sum(1 for k in keys if k in pred and k in ref and pred[k] == ref[k])
    return same / len(keys)


def string_similarity(pred: Mapping[str, Any], ref: Mapping[str, Any]) -> float:
    """``difflib`` ratio of the canonical JSON strings (sorted keys, no spaces)."""
    return difflib.SequenceMatcher(None, canonical(pred), canonical(ref), autojunk=False).ratio()


def action_similarity_reward(
    pred: Any,
    ref: Any,
    *,
    w_field: float = 0.7,
    w_str: float = 0.3,
    lo: float = INVALID_ACTION_REWARD,
    hi: float = 1.0,
    validate: Callable[[Mapping[str, Any]], bool] | None = None,
) -> float:
    """``clip(w_field·S_field + w_str·S_str, lo, hi)``; ``lo`` (-0.2) for an invalid action.

    An action is invalid when it is not a JSON object, or when ``validate`` rejects it
    (for example a schema check or applying the action offline).
    """
    p = parse_action(pred)
    r = parse_action(ref)
    if r is None:
        raise ValueError(f"reference action is not a JSON object: {ref!r}")
    if p is None or (validate is not None and not validate(p)):
        return lo
    score = w_field * field_similarity(p, r) + w_str * string_similarity(p, r)
    return min(hi, max(lo, score))


def action_similarity(text: str, info: Mapping[str, Any]) -> float:
    """The reward-callable form: compares ``text`` to ``info["reference"]``."""
    return action_similarity_reward(text, info["reference"])


def load_callable(ref: str) -> Callable[..., Any]:
    """Resolve ``"module:function"`` (config-selectable rewards and verifiers)."""
    import importlib

    module, _, attr = ref.partition(":")
    if not attr:
        raise ValueError(f"{ref!r} is not of the form 'module:function'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj


REWARDS: dict[str, Callable[[str, Mapping[str, Any]], float]] = {
    "exact_match": exact_match,
    "action_similarity": action_similarity,
}


def get_reward(name: str) -> Callable[[str, Mapping[str, Any]], float]:
    """A reward by built-in name or ``module:function`` path."""
    if name in REWARDS:
        return REWARDS[name]
    return load_callable(name)

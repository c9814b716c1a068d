"""Group advantages and reward functions against float64 references."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitchen.rl.advantages import group_advantages
from kitchen.rl.rewards import (
    INVALID_ACTION_REWARD,
    action_similarity,
    action_similarity_reward,
    exact_match,
    field_similarity,
    get_reward,
)

rewards = st.lists(st.floats(min_value=-5, max_value=5), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(rewards, st.booleans(), st.booleans())
def test_group_advantages(rs, std, loo) -> None:
    adv = group_advantages(rs, normalize_std=std, leave_one_out=loo)
    n = len(rs)
    want = []
    for i, r in enumerate(rs):
        if loo:
            base = sum(rs[j] for j in range(n) if j != i) / (n - 1) if n > 1 else r
        else:
            base = statistics.fmean(rs)
        a = r - base
        if std:
            a /= (statistics.stdev(rs) if n > 1 else 0.0) + 1e-4
        want.append(a)
    assert adv == pytest.approx(want, rel=1e-9, abs=1e-9)
    if not std or n > 1:
        assert sum(adv) == pytest.approx(0.0, abs=1e-6 * max(1.0, max(map(abs, adv), default=1)))


def test_equal_rewards_give_zero_advantage() -> None:
    assert group_advantages([1.0, 1.0, 1.0], normalize_std=True) == [0.0, 0.0, 0.0]
    assert group_advantages([]) == []


def test_exact_match() -> None:
    assert exact_match(" 7\n", {"answer": "7"}) == 1.0
    assert exact_match("07", {"answer": "7"}) == 0.0
    assert get_reward("exact_match") is exact_match


actions = st.dictionaries(
    st.sampled_from(["op", "from", "to", "line", "text"]),
    st.one_of(st.integers(0, 3), st.sampled_from(["a", "b", "x"])),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(actions, actions)
def test_action_similarity_formula_and_bounds(pred, ref) -> None:
    import difflib

    r = action_similarity_reward(json.dumps(pred), ref)
    keys = set(pred) | set(ref)
    s_field = (
        1.0
        if not keys
        else sum(1 for k in keys if k in pred and k in ref and pred[k] == ref[k]) / len(keys)
    )
    a = json.dumps(pred, sort_keys=True, separators=(",", ":"))
    b = json.dumps(ref, sort_keys=True, separators=(",", ":"))
    s_str = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    assert r == pytest.approx(min(1.0, max(-0.2, 0.7 * s_field + 0.3 * s_str)))
    assert -0.2 <= r <= 1.0
    assert action_similarity_reward(ref, ref) == pytest.approx(1.0)


def test_invalid_actions_get_minus_0_2() -> None:
    ref = {"op": "rename", "from": "a", "to": "b"}
    assert action_similarity_reward("not json", ref) == INVALID_ACTION_REWARD == -0.2
    assert action_similarity_reward("[1, 2]", ref) == -0.2
    assert action_similarity_reward('{"op": "rename"}', ref, validate=lambda a: "to" in a) == -0.2
    assert action_similarity('{"op":"rename","from":"a","to":"b"}', {"reference": ref}) == 1.0
    # Half the fields right: 0.7 * 2/3 + 0.3 * string ratio.
    r = action_similarity_reward({"op": "rename", "from": "a", "to": "c"}, ref)
    assert 0.7 * 2 / 3 < r < 0.7 * 2 / 3 + 0.3
    assert field_similarity({}, {}) == 1.0
    with pytest.raises(ValueError):
        action_similarity_reward("{}", "nope")


def test_custom_weights_clip_to_lower_bound() -> None:
    r = action_similarity_reward({"a": 1}, {"a": 1, "b": 2}, w_field=-5.0, w_str=0.0)
    assert r == -0.2
    assert math.isfinite(r)

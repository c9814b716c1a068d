"""Config parsing: --set overrides, YAML, validation errors that name the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitchen.config import apply_overrides, parse_set, read_yaml, resolve
from kitchen.errors import ConfigError, UsageError
from kitchen.workflows.supervised import SupervisedConfig

keys = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), min_size=1, max_size=3)
scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32).filter(
        lambda f: abs(f) > 1e-3 or f == 0
    ),
    st.from_regex(r"[a-z][a-z ]{0,10}[a-z]", fullmatch=True).filter(
        lambda s: s not in ("yes", "no", "on", "off", "true", "false", "null", "y", "n")
    ),
)


@settings(max_examples=150, deadline=None)
@given(keys, scalars)
def test_set_round_trips_scalars_at_dotted_paths(path: list[str], value: object) -> None:
    text = json.dumps(value) if isinstance(value, str | bool) else repr(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    out = apply_overrides({}, [f"{'.'.join(path)}={text}"])
    node = out
    for p in path[:-1]:
        node = node[p]
    got = node[path[-1]]
    if isinstance(value, float):
        assert got == pytest.approx(value, rel=1e-6)
    else:
        assert got == value


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.integers(), max_size=4))
def test_overrides_do_not_mutate_their_input(base: dict[str, int]) -> None:
    snapshot = dict(base)
    apply_overrides(base, ["zz.yy=1"])
    assert base == snapshot


def test_later_overrides_win_and_nest() -> None:
    assert apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c=[1, 2]", "a.b=3"]) == {
        "a": {"b": 3, "c": [1, 2]}
    }


@pytest.mark.parametrize("expr", ["novalue", "=3", "a..b=1", ".a=1"])
def test_malformed_set_is_a_usage_error(expr: str) -> None:
    with pytest.raises(UsageError):
        parse_set(expr)


def test_override_through_a_scalar_names_the_field() -> None:
    with pytest.raises(ConfigError, match="config field 'epochs'"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_validation_error_names_the_field_and_the_bad_value() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(SupervisedConfig, {}, ["batch_size=0"])
    assert info.value.field == "batch_size"
    assert "greater than or equal to 1" in str(info.value) and "(got 0)" in str(info.value)


def test_unknown_field_lists_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"config field 'epoch': unknown field; valid fields .*epochs"
    ):
        resolve(SupervisedConfig, {}, ["epoch=3"])


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(ConfigError, match="config field 'learning_rate'"):
        resolve(SupervisedConfig, {"learning_rate": "fast"})


def test_yaml_errors_name_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UsageError, match=r"bad\.yaml.* is not valid YAML"):
        read_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="must hold a mapping"):
        read_yaml(lst)
    with pytest.raises(UsageError, match="does not exist"):
        read_yaml(tmp_path / "missing.yaml")


def test_nested_override_changes_one_field_of_a_default_section() -> None:
    from kitchen.workflows.quickstart import QuickstartConfig

    cfg = resolve(QuickstartConfig, {}, ["model.config.hidden_size=64"])
    assert cfg.model["config"]["hidden_size"] == 64
    assert cfg.model["config"]["model_type"] == "llama"  # the rest of the default survives
    assert cfg.model["mode"] == "full"
    # and defaults are fresh copies: one config's change does not leak into the next
    assert resolve(QuickstartConfig).model["config"]["hidden_size"] == 128

"""Config loading: recipe defaults + YAML file + ``--set key=value`` overrides → pydantic model.

Every failure is a :class:`~kitchen.errors.ConfigError` (or UsageError) with a one-line
message naming the field and how to fix it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kitchen.errors import ConfigError, UsageError

M = TypeVar("M", bound=BaseModel)


def parse_set(expr: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (``3`` → int, ``[1,2]`` → list)."""
    key, sep, raw = expr.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--set expects key=value (e.g. --set epochs=3), got {expr!r}")
    parts = key.split(".")
    if any(not p for p in parts):
        raise UsageError(f"--set key {key!r} has an empty component; use dotted names like a.b")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise UsageError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
    return parts, value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key=value`` override set at its dotted path."""
    out = copy.deepcopy(dict(data))
    for expr in overrides:
        parts, value = parse_set(expr)
        node: dict[str, Any] = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    ".".join(parts[: i + 1]), f"is a {type(child).__name__}, not a section"
                )
            node = child
        node[parts[-1]] = value
    return out


def validate(model: type[M], data: Mapping[str, Any]) -> M:
    """Validate ``data`` against ``model``, turning pydantic errors into ConfigError."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(model.model_fields))
            msg = f"unknown field; valid fields of {model.__name__} are: {allowed}"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg} (got {err['input']!r})"
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        raise ConfigError(field, msg + suffix) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise UsageError(f"config file {p}{where} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"config file {p} must hold a mapping of fields, got {type(data).__name__}"
        )
    return data


def defaults_of(model: type[BaseModel]) -> dict[str, Any]:
    """The model's field defaults as plain data (required fields are left out)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.is_required():
            continue
        value = info.get_default(call_default_factory=True)
        out[name] = value.model_dump() if isinstance(value, BaseModel) else copy.deepcopy(value)
    return out


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; nested mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve(
    model: type[M], base: Mapping[str, Any] | None = None, overrides: Iterable[str] = ()
) -> M:
    """Defaults ← ``base`` ← overrides, validated.

    Nested sections merge, so ``--set model.config.hidden_size=64`` changes one field of
    the default model config instead of replacing the whole ``model`` section.
    """
    merged = deep_merge(defaults_of(model), base or {})
    return validate(model, apply_overrides(merged, overrides))

"""Config loading: recipe defaults + YAML file + ``--set key=value`` overrides → pydantic model.

Every failure is a :class:`~kitchen.errors.ConfigError` (or UsageError) with a one-line
message naming the field and how to fix it.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from kitchen.errors import ConfigError, UsageError

M = TypeVar("M", bound=BaseModel)

#: Bounds of the YAML kitchen reads: a config is small and flat; these stop alias bombs
#: ("billion laughs") and pathological nesting before they cost time or memory.
MAX_YAML_ALIASES = 64
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts aliases, nesting and (expanded) nodes, and refuses
    duplicate mapping keys instead of letting the last one win silently."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _Refused(
                    f"uses more than {MAX_YAML_ALIASES} aliases (*name); write the values out"
                )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(f"nests deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                raise _Refused(
                    f"line {key_node.start_mark.line + 1}: a mapping key must be a plain value"
                ) from None
            if duplicate:
                raise _Refused(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r}; keep one"
                )
        return super().construct_mapping(node, deep=deep)


class _Refused(Exception):
    """A YAML document outside the loader's bounds (reported as a UsageError)."""


def _count_nodes(value: Any, limit: int) -> None:
    """Refuse documents whose *expanded* size (aliases count each time) is huge."""
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            raise _Refused(
                f"expands to more than {limit} values (aliases count each time they are used)"
            )
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def load_yaml(text: str, name: str) -> Any:
    """Parse YAML ``text`` with the bounded safe loader; ``name`` is used in errors
    (``config file x.yaml``, ``--set a.b``). Tags such as ``!!python/object`` are refused."""
    loader = _BoundedLoader(text)
    try:
        data = loader.get_single_data()
        _count_nodes(data, MAX_YAML_NODES)
    except _Refused as exc:
        raise UsageError(f"{name} {exc}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{name}{where} is not valid YAML: {problem}") from None
    except RecursionError:
        raise UsageError(f"{name} nests too deeply") from None
    finally:
        loader.dispose()
    return data


def _numeric(annotation: Any) -> bool:
    """int/float fields (optional or not), but not bool ones."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and bool not in args and all(_numeric(a) for a in args)
    return False


#: No count, size or rate kitchen reads is larger than this; a bigger one is a typo
#: (``1e11``) that would otherwise hang in an allocation or loop.
MAX_CONFIG_NUMBER = 1e12


class KitchenConfig(BaseModel):
    """Base of kitchen's config schemas: unknown fields are refused, floats must be finite
    (``inf``/``nan`` never train), and a YAML boolean (``yes``/``no``/``on``) is not a
    number, so ``epochs: yes`` is refused instead of running one epoch."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _sane_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None or not _numeric(field.annotation):
            return value
        if isinstance(value, bool):
            raise ValueError(
                f"{str(value).lower()} is a boolean (YAML reads yes/no/on/off as booleans); "
                "give a number"
            )
        if isinstance(value, int | float) and abs(value) > MAX_CONFIG_NUMBER:
            raise ValueError(
                f"{value!r} is out of any sensible range for this field (|x| <= "
                f"{MAX_CONFIG_NUMBER:g}); did you mean a smaller number?"
            )
        return value


def parse_set(expr: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (``3`` → int, ``[1,2]`` → list)."""
    key, sep, raw = expr.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--set expects key=value (e.g. --set epochs=3), got {expr!r}")
    parts = key.split(".")
    if any(not p for p in parts):
        raise UsageError(f"--set key {key!r} has an empty component; use dotted names like a.b")
    value = load_yaml(raw, f"--set {key} value {raw!r}") if raw.strip() else ""
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


def validate(model: type[M], data: Mapping[str, Any], *, prefix: str = "") -> M:
    """Validate ``data`` against ``model``, turning pydantic errors into ConfigError;
    ``prefix`` (e.g. ``model``) goes before the field names in the message."""
    try:
        return model.model_validate(dict(data))
    except RecursionError:
        raise ConfigError(prefix or "<root>", "nests too deeply") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join([*([prefix] if prefix else []), *(str(p) for p in err["loc"])])
        field = field or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(model.model_fields))
            msg = f"unknown field; valid fields of {model.__name__} are: {allowed}"
        elif "input" in err and err["type"] != "missing" and len(repr(err["input"])) <= 80:
            msg = f"{msg} (got {err['input']!r})"
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        raise ConfigError(field, msg + suffix) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a mapping: a regular UTF-8 file of bounded size, parsed with the
    bounded loader (JSON files parse too: JSON is YAML)."""
    from kitchen.io import read_text_bounded

    p = Path(path)
    data = load_yaml(read_text_bounded(p, what="config file"), f"config file {p}")
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

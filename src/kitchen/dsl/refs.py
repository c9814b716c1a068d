"""Import references for callables, so an IR with functions in it can go to JSON and back."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from kitchen.errors import WorkflowError


def ref_of(obj: Any) -> str:
    """``module:qualname`` of a function, class, or the class of a stage instance.

    Lambdas and closures get a ref that names them but cannot be resolved; the IR still
    prints and diffs, and ``from_json`` reports which node cannot be rebuilt.
    """
    target = obj if callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}:{target.__qualname__}"


def resolve_ref(ref: str) -> Callable[..., Any]:
    """Import the object a ``module:qualname`` ref names."""
    module_name, _, qualname = ref.partition(":")
    if not qualname or "<" in qualname:
        raise WorkflowError(
            f"cannot import {ref!r}: lambdas and nested functions have no import path; "
            "define the function at module level to serialise it"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkflowError(f"cannot import module of {ref!r}: {exc}") from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise WorkflowError(f"cannot resolve {ref!r}: no attribute {part!r}") from exc
    return obj

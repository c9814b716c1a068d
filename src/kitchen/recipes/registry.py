"""The recipe registry: built-ins plus the ``kitchen.recipes`` entry-point group.

A downstream cookbook registers a recipe in its ``pyproject.toml``::

    [project.entry-points."kitchen.recipes"]
    my_sft = "my_cookbook.recipes:my_sft"     # a Recipe, or a zero-argument factory

Entry points are loaded lazily, on first lookup, and a broken one is reported by name
rather than breaking ``kitchen list``.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points

import structlog

from kitchen.errors import UsageError
from kitchen.recipes.recipe import Recipe

ENTRY_POINT_GROUP = "kitchen.recipes"

# Built-ins are import paths so `kitchen list` stays fast and torch-free.
_BUILTINS: dict[str, str] = {
    "sft": "kitchen.recipes.builtin:sft",
    "rl": "kitchen.recipes.rl:rl",
    "dpo": "kitchen.recipes.dpo:dpo",
    "distill": "kitchen.recipes.distill:distill",
    "quickstart": "kitchen.recipes.quickstart:quickstart",
}

_lock = threading.Lock()
_registered: dict[str, Recipe] = {}
_loaded_entry_points = False
_broken: dict[str, str] = {}


def register(recipe: Recipe, *, replace: bool = False) -> Recipe:
    """Register a recipe programmatically (tests, notebooks)."""
    with _lock:
        if recipe.name in _registered and not replace:
            raise UsageError(f"a recipe named {recipe.name!r} is already registered")
        _registered[recipe.name] = recipe
    return recipe


def unregister(name: str) -> None:
    with _lock:
        _registered.pop(name, None)


def _load_ref(ref: str) -> Recipe:
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    recipe = obj() if callable(obj) and not isinstance(obj, Recipe) else obj
    if not isinstance(recipe, Recipe):
        raise TypeError(f"{ref} is a {type(recipe).__name__}, not a kitchen Recipe")
    return recipe


def _load_entry_points() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _registered:
            continue
        try:
            _registered[ep.name] = _load_ref(ep.value)
        except Exception as exc:  # one broken plugin must not hide the others
            _broken[ep.name] = f"{type(exc).__name__}: {exc}"
            structlog.get_logger("kitchen").warning(
                "recipe_entry_point_failed", name=ep.name, error=str(exc)
            )


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; UsageError listing the known names if there is none."""
    with _lock:
        if name in _registered:
            return _registered[name]
        if name in _BUILTINS:
            _registered[name] = _load_ref(_BUILTINS[name])
            return _registered[name]
        _load_entry_points()
        if name in _registered:
            return _registered[name]
    if name in _broken:
        raise UsageError(f"recipe {name!r} failed to load: {_broken[name]}")
    known = ", ".join(sorted(set(_BUILTINS) | set(_registered)))
    raise UsageError(f"unknown recipe {name!r}; known recipes: {known} (see `kitchen list`)")


def list_recipes() -> list[Recipe]:
    """All recipes, built-ins first, each once, sorted by name."""
    for name in _BUILTINS:
        get_recipe(name)
    with _lock:
        _load_entry_points()
        return sorted(_registered.values(), key=lambda r: r.name)

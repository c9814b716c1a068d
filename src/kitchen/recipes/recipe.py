"""Recipes: a workflow bundled with validated defaults."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from kitchen.config import resolve
from kitchen.dsl.nodes import Workflow

ADAPTER_FAMILIES = ("noop", "hf", "remote")


@dataclass(frozen=True)
class Recipe:
    """What ``kitchen run NAME`` runs.

    ``build`` turns a validated config into the workflow (most recipes ignore the config
    and return a fixed workflow; some add stages depending on it). ``adapters`` lists the
    adapter families the recipe is tested on.
    """

    name: str
    description: str
    config_model: type[BaseModel]
    build: Callable[[Any], Workflow]
    adapters: tuple[str, ...] = ADAPTER_FAMILIES
    #: Per-adapter-family config overrides applied before the user's (e.g. a tiny model
    #: spec for ``hf``). Keys are family names.
    adapter_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def defaults(self) -> BaseModel:
        return self.config_model()

    def config(self, data: Mapping[str, Any] | None = None, overrides: Iterable[str] = ()) -> Any:
        """A validated config from ``data`` plus ``key=value`` overrides."""
        return resolve(self.config_model, data, overrides)

    def workflow(self, config: Any = None) -> Workflow:
        return self.build(config if config is not None else self.defaults())

"""The Context every stage reads and writes."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kitchen.metrics import MetricsRecorder
from kitchen.ports.bundle import Ports
from kitchen.telemetry.logging import default_logger

if TYPE_CHECKING:
    from kitchen.rundir import RunDir
    from kitchen.telemetry.events import Telemetry


@dataclass
class LoopFrame:
    """Where a loop is: iteration ``index`` (0-based) of ``length`` (None if unknown)."""

    name: str
    index: int
    item: Any
    length: int | None


class Context:
    """What a stage sees.

    - ``config``: the validated config (a pydantic model, or None in tests)
    - ``ports``: the wired :class:`~kitchen.ports.bundle.Ports`
    - ``state``: run state, a dict of JSON-serialisable values; checkpointed and restored
    - ``vars``: transient objects (datasets, pending futures); never checkpointed, so
      stages that fill it are marked ``replay=True``
    - ``metrics``: ``ctx.metrics.log({...}, step=n)``
    - ``run``: the run directory, or None when running without one
    - ``path``: the runtime path of the running node, e.g. ``epoch[2]/batch[17]/step``

    A stage is unit-tested by building a Context directly and calling the stage with it.
    """

    def __init__(
        self,
        config: Any = None,
        ports: Ports | None = None,
        *,
        state: dict[str, Any] | None = None,
        metrics: MetricsRecorder | None = None,
        run: RunDir | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = config
        self.ports = ports if ports is not None else Ports()
        self.state: dict[str, Any] = dict(state or {})
        self.vars: dict[str, Any] = {}
        if metrics is None:
            stores = [self.ports.metrics] if self.ports.metrics is not None else []
            metrics = MetricsRecorder(stores)
        self.metrics = metrics
        self.run = run
        self.telemetry = telemetry
        self.path = ""
        self.frames: list[LoopFrame] = []
        #: Runtime position as (node name, loop index or branch) segments; checkpoints save it.
        self.position: list[tuple[str, int | None]] = []
        self.log = default_logger()

    # -- loop position -------------------------------------------------------------
    def frame(self, loop_name: str) -> LoopFrame:
        for f in reversed(self.frames):
            if f.name == loop_name:
                return f
        raise KeyError(f"{self.path or '<no stage>'}: not inside a loop named {loop_name!r}")

    def index(self, loop_name: str) -> int:
        """The current iteration index of an enclosing loop."""
        return self.frame(loop_name).index

    def item(self, loop_name: str) -> Any:
        """The current item of an enclosing loop."""
        return self.frame(loop_name).item

    # -- parallel branches ---------------------------------------------------------
    def branch(self) -> Context:
        """An isolated copy for a parallel branch: own state and vars, shared ports."""
        child = Context.__new__(Context)
        child.config = self.config
        child.ports = self.ports
        child.state = copy.deepcopy(self.state)
        child.vars = dict(self.vars)
        child.metrics = self.metrics
        child.run = self.run
        child.telemetry = self.telemetry
        child.path = self.path
        child.frames = list(self.frames)
        child.position = list(self.position)
        child.log = self.log
        return child

"""An optional :class:`~kitchen.runner.executor.BranchExecutor` on Ray (the ``ray`` extra).

``Runner(executor=RayExecutor())`` submits each branch task of a ``parallel`` block as a
Ray task and returns the results in order; an exception in a branch is re-raised in the
caller (the first one, like :class:`~kitchen.runner.executor.ThreadExecutor`).

Ray ships a task to a worker process by pickling it (cloudpickle). A task must therefore be
serialisable: plain functions and data are; objects holding locks, open files or live models
are not. When a task cannot be pickled the executor either raises a
:class:`~kitchen.errors.UsageError` saying so (``fallback="error"``) or runs that batch on
local threads instead (``fallback="threads"``, the default), logging a warning. See
``docs/data_pipeline.md`` for what the runner needs to ship whole branches to Ray.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from kitchen.errors import UsageError
from kitchen.optional import require
from kitchen.runner.executor import ThreadExecutor

T = TypeVar("T")


def _call(task: Callable[[], Any]) -> Any:
    return task()


class RayExecutor:
    """Run branch tasks on a Ray cluster (``address``) or a local Ray instance."""

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: float = 1.0,
        init_kwargs: dict[str, Any] | None = None,
        fallback: Literal["threads", "error"] = "threads",
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.init_kwargs = dict(init_kwargs or {})
        self.fallback = fallback
        self.last_mode: str | None = None

    def _ray(self) -> Any:
        ray = require("ray", "ray")
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
        return ray

    def run_all(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        ray = self._ray()
        try:
            from ray import cloudpickle

            for t in tasks:
                cloudpickle.dumps(t)
        except (TypeError, pickle.PicklingError, AttributeError) as exc:
            if self.fallback == "error":
                raise UsageError(
                    f"RayExecutor: a branch task cannot be sent to Ray ({exc}); branches must "
                    "be serialisable, or use RayExecutor(fallback='threads')"
                ) from None
            import structlog

            structlog.get_logger("kitchen").warning(
                "ray_executor_fallback", reason=str(exc), branches=len(tasks)
            )
            self.last_mode = "threads"
            return ThreadExecutor().run_all(tasks)
        remote = ray.remote(num_cpus=self.num_cpus)(_call)
        refs = [remote.remote(t) for t in tasks]
        self.last_mode = "ray"
        try:
            return list(ray.get(refs))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            raise cause from None

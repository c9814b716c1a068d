"""The optional Ray branch executor on a local 2-CPU Ray instance."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kitchen import Context
from kitchen.dsl import branch, parallel, stage, workflow
from kitchen.errors import StageError, UsageError
from kitchen.runner import Runner

ray = pytest.importorskip("ray")

from kitchen.runner.ray_executor import RayExecutor  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _boom() -> None:
    raise ValueError("shard 3 is corrupt")


def test_serialisable_tasks_run_in_ray_workers(local_ray: None) -> None:
    ex = RayExecutor()
    pids = ex.run_all([os.getpid, os.getpid, lambda: 7])
    assert ex.last_mode == "ray"
    assert pids[2] == 7 and os.getpid() not in pids[:2]
    with pytest.raises(ValueError, match="shard 3 is corrupt"):
        ex.run_all([lambda: 1, _boom])


def a(ctx: Context) -> dict:
    return {"a": 1}


def b(ctx: Context) -> dict:
    return {"b": 2}


WF = workflow(
    "w", parallel("p", branch("x", stage(a), outputs=["a"]), branch("y", stage(b), outputs=["b"]))
)


def test_runner_branches_fall_back_to_threads_or_fail_clearly(local_ray: None) -> None:
    # The runner's branch tasks close over the Context and Runner (locks, telemetry), which
    # cannot be pickled today; see docs/data_pipeline.md for the runner change this needs.
    ex = RayExecutor()
    ctx = Runner(executor=ex).run(WF, Context())
    assert ctx.state == {"a": 1, "b": 2} and ex.last_mode == "threads"
    with pytest.raises((UsageError, StageError), match="cannot be sent to Ray"):
        Runner(executor=RayExecutor(fallback="error")).run(WF, Context())

"""The runner: concurrency, isolation, errors with paths, rollback, resume fast-forward."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kitchen.context import Context
from kitchen.dsl import branch, conditional, loop, parallel, stage, workflow
from kitchen.errors import CheckpointError, StageError
from kitchen.runner import ResumePoint, Runner, SerialExecutor
from kitchen.telemetry import MemoryEventSink, Telemetry


def test_parallel_branches_really_run_concurrently() -> None:
    """Each branch waits for an event the other sets: sequential execution would deadlock."""
    a_ready, b_ready = threading.Event(), threading.Event()

    def left(ctx: Context) -> dict[str, Any]:
        a_ready.set()
        assert b_ready.wait(timeout=10), "branch 'right' never ran concurrently"
        return {"left": True}

    def right(ctx: Context) -> dict[str, Any]:
        b_ready.set()
        assert a_ready.wait(timeout=10), "branch 'left' never ran concurrently"
        return {"right": True}

    wf = workflow(
        "w",
        parallel("p", branch("a", left, outputs=["left"]), branch("b", right, outputs=["right"])),
    )
    ctx = Runner().run(wf, Context())
    assert ctx.state == {"left": True, "right": True}


def test_serial_executor_would_deadlock_on_the_same_workflow() -> None:
    """Control for the test above: the event pair really does need concurrency."""
    a_ready, b_ready = threading.Event(), threading.Event()

    def left(ctx: Context) -> None:
        a_ready.set()
        if not b_ready.wait(timeout=0.3):
            raise TimeoutError("right never started")

    def right(ctx: Context) -> None:
        b_ready.set()
        if not a_ready.wait(timeout=0.3):
            raise TimeoutError("left never started")

    wf = workflow("w", parallel("p", a=[stage(left)], b=[stage(right)]))
    with pytest.raises(StageError, match="p/a/left"):
        Runner(executor=SerialExecutor()).run(wf, Context())


def test_branches_get_isolated_state_and_only_outputs_merge() -> None:
    def writer(value: str):
        def fn(ctx: Context) -> None:
            ctx.state["scratch"] = value  # same undeclared key in both branches
            ctx.state[f"out_{value}"] = value

        fn.__name__ = f"write_{value}"
        return fn

    wf = workflow(
        "w",
        parallel(
            "p",
            branch("a", writer("a"), outputs=["out_a"]),
            branch("b", writer("b"), outputs=["out_b"]),
        ),
    )
    ctx = Context(state={"keep": 1})
    Runner().run(wf, ctx)
    assert ctx.state == {"keep": 1, "out_a": "a", "out_b": "b"}


def test_two_branches_writing_the_same_key_is_an_error() -> None:
    def set_k(ctx: Context) -> dict[str, int]:
        return {"k": 1}

    wf = workflow("w", parallel("p", a=[stage(set_k)], b=[stage(set_k)]))
    with pytest.raises(StageError, match=r"branches 'a' and 'b' both wrote state key 'k'"):
        Runner().run(wf, Context())


def test_stage_error_names_the_runtime_path_and_rolls_back() -> None:
    rolled: list[str] = []

    def step(ctx: Context) -> None:
        if ctx.index("batch") == 2 and ctx.index("epoch") == 1:
            raise ValueError("boom")

    def undo(ctx: Context, exc: BaseException) -> None:
        rolled.append(f"{ctx.path}:{exc}")

    wf = workflow("w", loop("epoch", 3, loop("batch", 4, stage(step, rollback=undo))))
    with pytest.raises(StageError) as info:
        Runner().run(wf, Context())
    assert info.value.path == "epoch[1]/batch[2]/step"
    assert "epoch[1]/batch[2]/step failed: ValueError: boom" in str(info.value)
    assert rolled == ["epoch[1]/batch[2]/step:boom"]


class Accumulate:
    """A class stage with a rollback method."""

    name = "accumulate"
    outputs = ("total",)

    def __init__(self, amount: int) -> None:
        self.amount = amount

    def __call__(self, ctx: Context) -> dict[str, int]:
        return {"total": ctx.state.get("total", 0) + self.amount * (ctx.item("xs"))}

    def rollback(self, ctx: Context, exc: BaseException) -> None:  # pragma: no cover - not hit
        ctx.state["total"] = 0


def test_class_stage_and_loop_over_items_and_function() -> None:
    wf = workflow("w", loop("xs", [1, 2, 3], stage(Accumulate(10))))
    assert Runner().run(wf, Context()).state["total"] == 60
    wf2 = workflow("w", loop("xs", lambda ctx: range(ctx.config["n"]), stage(Accumulate(1))))
    assert Runner().run(wf2, Context(config={"n": 5})).state["total"] == 10


def test_stage_is_unit_testable_without_a_runner() -> None:
    ctx = Context(state={"total": 5})
    ctx.frames.append(
        __import__("kitchen.context", fromlist=["LoopFrame"]).LoopFrame("xs", 0, 7, None)
    )
    assert Accumulate(2)(ctx) == {"total": 19}


def test_conditional_with_else_and_predicate_errors() -> None:
    seen: list[str] = []

    def mark(ctx: Context) -> None:
        seen.append(ctx.path)

    wf = workflow(
        "w",
        loop(
            "i",
            4,
            conditional(
                "even",
                lambda ctx: ctx.index("i") % 2 == 0,
                stage(mark, name="yes"),
                orelse=[stage(mark, name="no")],
            ),
        ),
    )
    Runner().run(wf, Context())
    assert seen == ["i[0]/even/yes", "i[1]/even/no", "i[2]/even/yes", "i[3]/even/no"]

    bad = workflow("w", conditional("c", lambda ctx: 1 / 0, stage(mark)))
    with pytest.raises(StageError, match=r"c \(predicate\)"):
        Runner().run(bad, Context())


def test_telemetry_emits_workflow_and_stage_events() -> None:
    sink = MemoryEventSink()
    wf = workflow("w", loop("i", 2, stage(lambda ctx: None, name="s")))
    Runner(telemetry=Telemetry("r1", [sink])).run(wf, Context())
    kinds = [(r["event"], r.get("path")) for r in sink.records]
    assert kinds[0] == ("workflow_start", None)
    assert ("stage_start", "i[0]/s") in kinds and ("stage_end", "i[1]/s") in kinds
    assert kinds[-1] == ("workflow_end", None)
    assert all(r["run_id"] == "r1" for r in sink.records)


class Saver:
    """A resumable stage: records where it ran; restore() records the resume."""

    name = "save"

    def __call__(self, ctx: Context) -> None:
        ctx.vars.setdefault("saves", []).append(ctx.path)

    def restore(self, ctx: Context, record: dict[str, Any]) -> None:
        ctx.state.update(record["state"])
        ctx.vars.setdefault("restored", []).append(ctx.path)


def _trace(ctx: Context) -> None:
    ctx.vars.setdefault("trace", []).append(ctx.path)


def test_resume_fast_forwards_to_the_recorded_position() -> None:
    wf = workflow(
        "w",
        stage(_trace, name="setup", replay=True),
        stage(_trace, name="once"),
        loop(
            "epoch",
            3,
            stage(_trace, name="shuffle", replay=True),
            loop(
                "batch",
                3,
                stage(_trace, name="step"),
                conditional("ck", lambda c: True, stage(Saver())),
            ),
        ),
        stage(_trace, name="final"),
    )
    full = Runner().run(wf, Context()).vars["trace"]
    point = ResumePoint(
        position=[("epoch", 1), ("batch", 1), ("ck", 0), ("save", None)], record={"state": {"x": 1}}
    )
    ctx = Runner().run(wf, Context(), resume=point)
    resumed = ctx.vars["trace"]
    assert ctx.vars["restored"] == ["epoch[1]/batch[1]/ck/save"]
    assert ctx.state["x"] == 1
    # Replay stages ran, non-replay stages before the point were skipped, and the rest
    # equals the tail of an uninterrupted run.
    assert resumed[:2] == ["setup", "epoch[1]/shuffle"]
    cut = full.index("epoch[1]/batch[1]/step") + 1
    assert resumed[2:] == full[cut:]


def test_resume_at_a_position_that_does_not_exist_is_an_error() -> None:
    wf = workflow("w", stage(_trace, name="a"))
    with pytest.raises(CheckpointError, match="does not exist"):
        Runner().run(wf, Context(), resume=ResumePoint([("nope", None)]))

"""Content-hash stage caching: unchanged inputs skip work; a change re-runs only downstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from kitchen.context import Context
from kitchen.dsl import stage, workflow
from kitchen.errors import WorkflowError
from kitchen.runner import CachePolicy, Runner, StageCache

RUNS: list[str] = []


def normalise(ctx: Context) -> dict[str, str]:
    RUNS.append("normalise")
    out = Path(ctx.state["workdir"]) / "normalised.txt"
    out.write_text(Path(ctx.state["source"]).read_text().strip().lower() + "\n")
    return {"normalised": str(out)}


def count_words(ctx: Context) -> dict[str, int]:
    RUNS.append("count")
    return {"words": len(Path(ctx.state["normalised"]).read_text().split())}


def report(ctx: Context) -> dict[str, str]:
    RUNS.append("report")
    return {"summary": f"{ctx.state['words']} words"}


WF = workflow(
    "data",
    stage(normalise, cache=CachePolicy(inputs=("source",)), outputs=["normalised"]),
    stage(count_words, cache=CachePolicy(inputs=("normalised",)), outputs=["words"]),
    stage(report, cache=CachePolicy(inputs=("words",)), outputs=["summary"]),
)


def run(tmp: Path, cache: StageCache) -> Context:
    ctx = Context(state={"source": str(tmp / "src.txt"), "workdir": str(tmp)})
    Runner(cache=cache).run(WF, ctx)
    return ctx


def test_unchanged_inputs_do_no_work_and_changes_rerun_only_downstream(tmp_path: Path) -> None:
    RUNS.clear()
    (tmp_path / "src.txt").write_text("Hello World\n")
    cache = StageCache(tmp_path / "cache")
    assert run(tmp_path, cache).state["summary"] == "2 words"
    assert RUNS == ["normalise", "count", "report"]

    RUNS.clear()
    cache2 = StageCache(tmp_path / "cache")
    assert run(tmp_path, cache2).state["summary"] == "2 words"
    assert RUNS == []
    assert [d.hit for d in cache2.decisions] == [True, True, True]

    # A change that normalises to the same content re-runs the first stage only.
    RUNS.clear()
    (tmp_path / "src.txt").write_text("  HELLO world  \n")
    run(tmp_path, StageCache(tmp_path / "cache"))
    assert RUNS == ["normalise"]

    # A real change re-runs the chain downstream.
    RUNS.clear()
    (tmp_path / "src.txt").write_text("hello big world\n")
    assert run(tmp_path, StageCache(tmp_path / "cache")).state["summary"] == "3 words"
    assert RUNS == ["normalise", "count", "report"]


def test_deleted_output_file_turns_a_hit_into_a_miss(tmp_path: Path) -> None:
    RUNS.clear()
    (tmp_path / "src.txt").write_text("a b\n")
    run(tmp_path, StageCache(tmp_path / "cache"))
    (tmp_path / "normalised.txt").unlink()
    RUNS.clear()
    run(tmp_path, StageCache(tmp_path / "cache"))
    assert RUNS == ["normalise"]


def test_key_changes_with_params(tmp_path: Path) -> None:
    def scaled(ctx: Context, factor: int) -> dict[str, int]:
        return {"y": ctx.state["x"] * factor}

    cache = StageCache(tmp_path)
    k1 = cache.key(stage(scaled, factor=2, cache=CachePolicy(("x",)), outputs=["y"]), "s", {"x": 1})
    k2 = cache.key(stage(scaled, factor=3, cache=CachePolicy(("x",)), outputs=["y"]), "s", {"x": 1})
    k3 = cache.key(stage(scaled, factor=2, cache=CachePolicy(("x",)), outputs=["y"]), "s", {"x": 2})
    assert len({k1[0], k2[0], k3[0]}) == 3
    assert k1[1]["params"] == {"factor": 2}


def test_cacheable_stage_must_declare_outputs() -> None:
    with pytest.raises(WorkflowError, match="declares no outputs"):
        workflow("w", stage(report, cache=CachePolicy(("words",))))

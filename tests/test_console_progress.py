"""The rich progress display: nested loop bars while running, the finished outer bar kept."""

from __future__ import annotations

import io

from rich.console import Console

from kitchen.context import Context
from kitchen.dsl import loop, stage, workflow
from kitchen.runner import Runner
from kitchen.telemetry.console import ConsoleProgress


def test_outer_bar_stays_finished_and_inner_bars_go() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    progress = ConsoleProgress(console)
    seen: list[list[tuple[str, float | None, float]]] = []

    def step(ctx: Context) -> None:
        seen.append([(t.description, t.total, t.completed) for t in progress._progress.tasks])

    wf = workflow(
        "w", loop("epoch", 2, loop("batch", 3, stage(step), progress=True), progress=True)
    )
    Runner(progress=progress).run(wf, Context())
    # while running: the epoch bar and one batch bar, stacked
    assert [d for d, _, _ in seen[0]] == ["epoch", "epoch[0]/batch"]
    assert [d for d, _, _ in seen[-1]] == ["epoch", "epoch[1]/batch"]
    assert seen[-1][1][1:] == (3, 2)  # before the last batch's advance
    # the last frame printed holds the finished outer bar
    text = out.getvalue()
    assert "epoch" in text and "2/2" in text

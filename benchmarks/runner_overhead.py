"""Runner overhead per stage: a workflow of many trivial stages vs. a plain Python loop.

    python benchmarks/runner_overhead.py [--stages 20] [--iterations 5000] [--repeats 5]

Both sides call the same trivial stage functions the same number of times, in one
process, interleaved; the difference divided by the number of stage calls is the
runner's overhead. Two runner configurations are measured: per-stage telemetry off
(the runner's floor) and on (a structlog debug event, which the default log level
filters, plus a JSONL event line for every stage start/end). If Prefect is importable,
a Prefect task call is timed side by side (Prefect is not a kitchen dependency).
The last line is machine-readable: ``RESULT overhead_per_stage_us=<float>`` (telemetry off).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from kitchen.context import Context
from kitchen.dsl import loop, stage, workflow
from kitchen.runner import Runner
from kitchen.telemetry import JsonlEventSink, Telemetry


def make_stage(i: int) -> Callable[[Context], None]:
    def fn(ctx: Context) -> None:
        ctx.vars["n"] += 1

    fn.__name__ = f"s{i}"
    return fn


def best_of(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prefect-calls", type=int, default=200)
    args = ap.parse_args()

    fns = [make_stage(i) for i in range(args.stages)]
    wf = workflow("bench", loop("it", args.iterations, *[stage(f) for f in fns]))
    calls = args.stages * args.iterations

    def plain() -> None:
        ctx = Context()
        ctx.vars["n"] = 0
        for _ in range(args.iterations):
            for f in fns:
                f(ctx)
        assert ctx.vars["n"] == calls

    quiet = Runner(telemetry=Telemetry(stage_events=False))

    def kitchen_quiet() -> None:
        ctx = Context()
        ctx.vars["n"] = 0
        quiet.run(wf, ctx)
        assert ctx.vars["n"] == calls

    tmp = tempfile.mkdtemp()
    sink = JsonlEventSink(os.path.join(tmp, "events.jsonl"))
    loud = Runner(telemetry=Telemetry(sinks=[sink], stage_events=True))

    def kitchen_events() -> None:
        ctx = Context()
        ctx.vars["n"] = 0
        loud.run(wf, ctx)
        assert ctx.vars["n"] == calls

    # Interleave so drift (thermal, other load) hits all sides alike.
    t_plain, t_quiet, t_loud = [], [], []
    for _ in range(args.repeats):
        t_plain.append(best_of(plain, 1))
        t_quiet.append(best_of(kitchen_quiet, 1))
        t_loud.append(best_of(kitchen_events, 1))
    sink.close()
    p, q, lo = min(t_plain), min(t_quiet), min(t_loud)
    per_call_plain = p / calls * 1e6
    overhead_quiet = (q - p) / calls * 1e6
    overhead_loud = (lo - p) / calls * 1e6

    table = Table(title=f"runner overhead: {args.stages} stages × {args.iterations} iterations")
    table.add_column("variant")
    table.add_column("total s", justify="right")
    table.add_column("µs / stage", justify="right")
    table.add_column("overhead µs / stage", justify="right")
    table.add_column("ratio vs plain", justify="right")
    table.add_row("plain Python loop", f"{p:.4f}", f"{per_call_plain:.3f}", "-", "1.00")
    table.add_row(
        "kitchen (telemetry off)",
        f"{q:.4f}",
        f"{q / calls * 1e6:.3f}",
        f"{overhead_quiet:.3f}",
        f"{q / p:.2f}",
    )
    table.add_row(
        "kitchen (stage events)",
        f"{lo:.4f}",
        f"{lo / calls * 1e6:.3f}",
        f"{overhead_loud:.3f}",
        f"{lo / p:.2f}",
    )

    prefect_us = None
    try:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
        from prefect import flow, task

        @task
        def ptask(x: int) -> int:
            return x + 1

        @flow
        def pflow(n: int) -> int:
            total = 0
            for i in range(n):
                total += ptask(i)
            return total

        pflow(5)  # warm-up (starts Prefect's ephemeral machinery)
        t0 = time.perf_counter()
        pflow(args.prefect_calls)
        prefect_us = (time.perf_counter() - t0) / args.prefect_calls * 1e6
        table.add_row(
            "prefect task call",
            "-",
            f"{prefect_us:.1f}",
            f"{prefect_us:.1f}",
            f"{prefect_us / max(overhead_quiet, 1e-9):.0f}× kitchen overhead",
        )
    except Exception as exc:  # Prefect absent or unable to start here
        print(f"prefect: not measured ({type(exc).__name__}: {exc})", file=sys.stderr)

    Console().print(table)
    print(
        f"python {sys.version.split()[0]}, median kitchen (off) {statistics.median(t_quiet):.4f}s"
    )
    extra = f" prefect_task_us={prefect_us:.1f}" if prefect_us is not None else ""
    print(
        f"RESULT overhead_per_stage_us={overhead_quiet:.3f} "
        f"overhead_with_events_us={overhead_loud:.3f}{extra}"
    )


if __name__ == "__main__":
    main()

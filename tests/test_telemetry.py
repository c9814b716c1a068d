"""OpenTelemetry spans (SDK optional) and the JSONL event sink."""

from __future__ import annotations

import json

import pytest

from kitchen.context import Context
from kitchen.dsl import loop, parallel, stage, workflow
from kitchen.runner import Runner
from kitchen.telemetry import JsonlEventSink, Telemetry

sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402


def train_step(ctx: Context) -> None:
    step = ctx.state.get("step", 0) + 1
    ctx.state["step"] = step
    ctx.metrics.log({"loss": 1.0 / step}, step=step)


def test_spans_nest_by_path_and_carry_attributes() -> None:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    wf = workflow("w", loop("epoch", 2, loop("batch", 2, stage(train_step))))
    Runner(telemetry=Telemetry("r", tracer_provider=provider)).run(wf, Context())
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    assert "workflow:w" in by_name
    assert "epoch[1]/batch[1]/train_step" in by_name
    root = by_name["workflow:w"]
    leaf = by_name["epoch[0]/batch[1]/train_step"]
    assert leaf.parent is not None and leaf.parent.span_id == root.context.span_id
    assert leaf.attributes["kitchen.path"] == "epoch[0]/batch[1]/train_step"
    assert leaf.attributes["kitchen.metric.loss"] == pytest.approx(0.5)
    assert len([s for s in spans if s.name.endswith("/train_step")]) == 4


def test_span_attributes_hold_only_the_metrics_that_stage_logged() -> None:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def quiet(ctx: Context) -> None:
        ctx.state["seen"] = True

    wf = workflow("w", stage(train_step), stage(quiet))
    Runner(telemetry=Telemetry("r", tracer_provider=provider)).run(wf, Context())
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    assert by_name["train_step"].attributes["kitchen.metric.loss"] == pytest.approx(1.0)
    assert not any(k.startswith("kitchen.metric.") for k in by_name["quiet"].attributes)


def test_parallel_branch_spans_nest_under_the_workflow_span() -> None:
    import threading

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    both = threading.Barrier(2, timeout=10)  # both branches log while the other is running

    def log_as(name: str, value: float):  # type: ignore[no-untyped-def]
        def fn(ctx: Context) -> None:
            both.wait()
            ctx.metrics.log({name: value}, step=0)
            both.wait()

        fn.__name__ = f"log_{name}"
        return fn

    wf = workflow("w", parallel("p", a=[stage(log_as("a", 1.0))], b=[stage(log_as("b", 2.0))]))
    Runner(telemetry=Telemetry("r", tracer_provider=provider)).run(wf, Context())
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    root = by_name["workflow:w"]
    for branch, key, value in (("a", "a", 1.0), ("b", "b", 2.0)):
        span = by_name[f"p/{branch}/log_{key}"]
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
        metrics = {k for k in span.attributes if k.startswith("kitchen.metric.")}
        assert metrics == {f"kitchen.metric.{key}"}  # not the other branch's metric
        assert span.attributes[f"kitchen.metric.{key}"] == value


def test_failing_stage_span_records_the_exception() -> None:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def explode(ctx: Context) -> None:
        raise RuntimeError("nope")

    with pytest.raises(Exception, match="explode failed"):
        Runner(telemetry=Telemetry(tracer_provider=provider)).run(
            workflow("w", stage(explode)), Context()
        )
    span = next(s for s in exporter.get_finished_spans() if s.name == "explode")
    assert any(e.name == "exception" for e in span.events)


def test_jsonl_sink_writes_one_parseable_line_per_event(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "events.jsonl"
    sink = JsonlEventSink(path)
    wf = workflow("w", loop("i", 3, stage(train_step)))
    Runner(telemetry=Telemetry("rid", [sink])).run(wf, Context())
    sink.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in records].count("stage_end") == 3
    assert records[0]["event"] == "workflow_start" and records[-1]["event"] == "workflow_end"
    assert {r["run_id"] for r in records} == {"rid"}

"""The composition root: the one place adapter names become port instances.

``build_ports("noop" | "hf" | "remote", config, run)`` imports the adapter family lazily,
so ``import kitchen`` and ``kitchen --help`` never import torch or the tinker SDK. A missing
extra becomes :class:`~kitchen.errors.AdapterUnavailable` with the ``pip install`` hint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kitchen.errors import UsageError
from kitchen.optional import require
from kitchen.ports.bundle import Ports
from kitchen.rundir import RunDir

ADAPTERS = ("noop", "hf", "remote")


METRICS_SINKS = ("jsonl", "tensorboard", "mlflow", "wandb")


def _sink(name: str, run: RunDir) -> Any:
    """One metrics sink writing inside the run directory (imports its library lazily).

    MLflow and W&B runs have ids of their own; they are kept in the run manifest
    (``metrics_sink_ids``) so that ``--resume`` continues the same MLflow/W&B run."""
    if name == "jsonl":
        from kitchen.adapters.metrics.jsonl import JsonlMetricsStore

        return JsonlMetricsStore(run.metrics_path)
    if name == "tensorboard":
        tb = require("kitchen.adapters.metrics.tensorboard", "tensorboard")
        return tb.TensorBoardMetricsStore(run.root / "tensorboard")
    ids: dict[str, str] = dict(run.read_manifest().get("metrics_sink_ids") or {})
    store: Any
    if name == "mlflow":
        ml = require("kitchen.adapters.metrics.mlflow", "mlflow")
        store = ml.MlflowMetricsStore(
            tracking_uri=(run.root / "mlruns").resolve().as_uri(),
            run_name=run.root.name,
            run_id=ids.get("mlflow"),
        )
    elif name == "wandb":
        wb = require("kitchen.adapters.metrics.wandb", "wandb")
        store = wb.WandbMetricsStore(
            project="kitchen", run_name=run.root.name, dir=str(run.root), run_id=ids.get("wandb")
        )
    else:
        raise UsageError(f"unknown metrics sink {name!r}; choose from: {', '.join(METRICS_SINKS)}")
    if ids.get(name) != store.run_id:
        run.update_manifest(metrics_sink_ids={**ids, name: store.run_id})
    return store


def parse_sinks(spec: str | None) -> list[str]:
    """``"jsonl,tensorboard"`` → names, checked; jsonl (the run's metrics.jsonl) is implied."""
    names = [s.strip() for s in (spec or "").split(",") if s.strip()]
    for n in names:
        if n not in METRICS_SINKS:
            raise UsageError(
                f"--metrics: unknown sink {n!r}; choose from: {', '.join(METRICS_SINKS)}"
            )
    return ["jsonl", *[n for n in names if n != "jsonl"]]


def _model_spec(config: Any) -> dict[str, Any]:
    spec = getattr(config, "model", None)
    return dict(spec or {})


def _noop(config: Any, run: RunDir | None) -> Ports:
    from kitchen.adapters.noop.spec import NoopModelSpec
    from kitchen.config import validate

    noop = require("kitchen.adapters.noop", "noop")
    spec = validate(NoopModelSpec, _model_spec(config), prefix="model").model_dump()
    seed = int(getattr(config, "seed", 0) or 0)
    vocab = int(spec["vocab_size"])
    state_dir = str(run.checkpoints_dir) if run is not None else None
    training = noop.NoopTrainingClient(
        model_name=str(spec.get("name", "noop-tiny")),
        vocab_size=vocab,
        seed=seed,
        state_dir=state_dir,
    )
    return Ports(
        training=training,
        sampling=noop.NoopSamplingClient(vocab_size=vocab, seed=seed),
        dataset=noop.NoopDatasetStore(),
        blob=noop.NoopBlobStore(),
        hub=noop.NoopHubClient(),
        metrics=noop.NoopMetricsStore(),
        tokenizer=noop.NoopTokenizer(vocab_size=vocab),
    )


def _hf(config: Any, run: RunDir | None) -> Ports:
    wiring = require("kitchen.adapters.hf.wiring", "hf")
    return wiring.build_ports(config, run)


def _remote(config: Any, run: RunDir | None) -> Ports:
    wiring = require("kitchen.adapters.remote.wiring", "remote")
    return wiring.build_ports(config, run)


_FACTORIES: dict[str, Callable[[Any, RunDir | None], Ports]] = {
    "noop": _noop,
    "hf": _hf,
    "remote": _remote,
}


def check_config(adapters: str, config: Any) -> None:
    """Validate the adapter family's part of ``config`` (``config.model``) before a run
    directory is created, so a bad model spec writes nothing. A family whose extra is
    missing is skipped here: :func:`build_ports` then says what to install."""
    import importlib

    if adapters == "noop":
        from kitchen.adapters.noop.spec import NoopModelSpec
        from kitchen.config import validate

        validate(NoopModelSpec, _model_spec(config), prefix="model")
        return
    module = {"hf": "kitchen.adapters.hf.wiring", "remote": "kitchen.adapters.remote.wiring"}
    if adapters not in module:
        return
    try:
        wiring = importlib.import_module(module[adapters])
    except ImportError:
        return
    if adapters == "hf":
        wiring.model_spec(config)
    else:
        wiring.remote_config(config)


def build_ports(adapters: str, config: Any = None, run: RunDir | None = None) -> Ports:
    """Wire the ports of an adapter family for ``config``; metrics also go to the run dir."""
    factory = _FACTORIES.get(adapters)
    if factory is None:
        raise UsageError(f"unknown adapters {adapters!r}; choose one of: {', '.join(ADAPTERS)}")
    ports = factory(config, run)
    return ports


def metrics_stores(
    ports: Ports, run: RunDir | None, sinks: Sequence[str] = ("jsonl",)
) -> list[Any]:
    """The stores ``ctx.metrics`` writes to: the run's sinks (metrics.jsonl first) plus the
    metrics port of the adapter family."""
    stores = [_sink(n, run) for n in sinks] if run is not None else []
    if ports.metrics is not None:
        stores.append(ports.metrics)
    return stores

"""Training runs and checkpoints as the SDK's ``RestClient`` reads them (JSON shapes of
``tinker.types.TrainingRun`` / ``Checkpoint`` / ``TrainingRunsResponse``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kitchen.server.storage import Checkpoint, CheckpointStore

#: ``tinker://RUN/<kind>/NAME`` kind -> the SDK's ``CheckpointType``.
CHECKPOINT_TYPES = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def checkpoint_json(c: Checkpoint) -> dict[str, Any]:
    return {
        "checkpoint_id": f"{c.kind}/{c.name}",
        "checkpoint_type": CHECKPOINT_TYPES[c.kind],
        "time": _iso(c.created_at),
        "tinker_path": c.tinker_path,
        "user_metadata": c.user_metadata or None,
    }


def training_run_json(
    store: CheckpointStore, run_id: str, last_request: float | None = None
) -> dict[str, Any]:
    """One run: what ``create_model`` recorded plus its newest checkpoint of each type.

    ``last_request``: wall-clock time of the run's latest request when it is live in this
    server; otherwise its newest checkpoint's (or creation) time.
    """
    run = store.read_run(run_id)
    ckpts = store.list(run_id)
    newest: dict[str, Checkpoint] = {}
    for c in ckpts:
        if c.kind not in newest or c.created_at >= newest[c.kind].created_at:
            newest[c.kind] = c
    created = float(run.get("created_at", 0.0))
    last = max([created, *(c.created_at for c in ckpts), last_request or 0.0])
    meta = run.get("user_metadata") or None
    return {
        "training_run_id": run_id,
        "base_model": str(run.get("base_model")),
        "model_owner": "kitchen",
        "is_lora": bool(run.get("is_lora", True)),
        "corrupted": False,
        "lora_rank": run.get("lora_rank"),
        "last_request_time": _iso(last),
        "last_checkpoint": checkpoint_json(newest["weights"]) if "weights" in newest else None,
        "last_sampler_checkpoint": (
            checkpoint_json(newest["sampler_weights"]) if "sampler_weights" in newest else None
        ),
        "user_metadata": {str(k): str(v) for k, v in meta.items()} if meta else None,
    }

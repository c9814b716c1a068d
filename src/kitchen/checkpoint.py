"""The checkpoint stage: saves and restores a run at its exact loop position."""

from __future__ import annotations

import base64
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from kitchen.context import Context
from kitchen.errors import CheckpointError
from kitchen.io import atomic_write_json, read_json


def capture_rng() -> dict[str, Any]:
    """RNG states of Python, and of numpy/torch when the process already uses them."""
    version, internal, gauss = random.getstate()
    out: dict[str, Any] = {"python": [version, list(internal), gauss]}
    np = sys.modules.get("numpy")
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        out["numpy"] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    np = sys.modules.get("numpy")
    if np is not None and "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch = sys.modules.get("torch")
    if torch is not None and "torch" in state:
        raw = base64.b64decode(state["torch"])
        torch.set_rng_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))


def _check_json(state: dict[str, Any], path: str) -> None:
    for key, value in state.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: ctx.state[{key!r}] is not JSON-serialisable ({exc}); keep run state "
                "to JSON values and put live objects in ctx.vars"
            ) from exc


@dataclass
class Checkpoint:
    """Save the run: position, ``ctx.state``, RNG, metrics count and the training port.

    Place it where a run may be resumed (for example in a conditional inside the batch
    loop). Resuming calls :meth:`restore` at this same node. Without a run directory the
    stage does nothing, so workflows stay runnable in unit tests.
    """

    name: str = "checkpoint"

    def __call__(self, ctx: Context) -> None:
        run = ctx.run
        if run is None:
            return
        if any(seg[0].startswith("parallel:") for seg in ctx.position):
            raise CheckpointError(
                f"{ctx.path}: checkpoints inside parallel branches are not supported"
            )
        leaf = ctx.path.rsplit("/", 1)[-1]
        position = [[n, i] for n, i in ctx.position] + [[leaf, None]]
        seq = len(run.checkpoints()) + 1
        ckpt_name = f"ckpt-{seq:06d}"
        ckpt_dir = run.checkpoint_path(ckpt_name)
        _check_json(ctx.state, ctx.path)
        atomic_write_json(
            ckpt_dir / "run_state.json",
            {"state": ctx.state, "rng": capture_rng(), "position": position},
            indent=None,
        )
        ports: dict[str, str] = {}
        training = ctx.ports.training
        if training is not None:
            meta = {"position": json.dumps(position), "step": str(ctx.state.get("step", 0))}
            saved = training.save_state(ckpt_name, user_metadata=meta).result().path
            ports["training"] = run.relative(saved)
        ctx.metrics.flush()
        record = {
            "name": ckpt_name,
            "path": ctx.path,
            "position": position,
            "step": ctx.state.get("step", 0),
            "state_file": f"checkpoints/{ckpt_name}/run_state.json",
            "ports": ports,
            "metrics_count": ctx.metrics.count,
            "time": time.time(),
        }
        run.add_checkpoint(record)
        if ctx.telemetry is not None:
            ctx.telemetry.event("checkpoint", level="info", name=ckpt_name, path=ctx.path)
            ctx.telemetry.flush()

    def restore(self, ctx: Context, record: dict[str, Any]) -> None:
        """Put the run back as it was when ``record`` was written."""
        run = ctx.run
        if run is None:
            raise CheckpointError("cannot restore a checkpoint without a run directory")
        state_path = run.root / record["state_file"]
        if not state_path.exists():
            raise CheckpointError(f"checkpoint state file {state_path} is missing")
        saved = read_json(state_path)
        ctx.state.clear()
        ctx.state.update(saved["state"])
        restore_rng(saved.get("rng", {}))
        training_path = record.get("ports", {}).get("training")
        if training_path:
            ctx.ports.require("training").load_state(run.resolve(training_path)).result()
        count = int(record.get("metrics_count", 0))
        run.truncate_metrics(count)
        ctx.metrics.count = count

"""Training state on disk: safetensors + JSON, never pickle, committed atomically.

Layout of ``<state_dir>/<name>/``::

    weights.safetensors     trainable parameters by name
    optimizer.safetensors   "<param name>::exp_avg" / "::exp_avg_sq" (absent before step 1)
    optimizer.json          AdamW hyper-parameters, per-parameter step counts, param order
    rng.safetensors         torch CPU (and CUDA) generator states as uint8 tensors
    rng.json                Python ``random`` and numpy global states
    user_metadata.json      the caller's metadata (e.g. data position)
    spec.json               the ModelSpec the weights belong to
    complete.json           written last: format, file sizes and sha256 digests

Each file is written atomically via :mod:`kitchen.io`; an existing ``complete.json`` is
removed first and the new one written last, listing the files it covers with their sizes and
sha256 digests. A reader therefore sees either a complete checkpoint or one it refuses
(:class:`~kitchen.errors.CheckpointError`). The directory is shared, not replaced: a run's
checkpoint stage keeps its own ``run_state.json`` in the same ``checkpoints/<name>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from kitchen.errors import CheckpointError
from kitchen.io import atomic_write_bytes, atomic_write_json, read_json

FORMAT = "kitchen-hf-state/1"
MARKER = "complete.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_name(name: str) -> str:
    """Reject names that could escape the state directory."""
    if not _NAME_RE.match(name) or ".." in name:
        raise ValueError(
            f"checkpoint name {name!r} must be letters, digits, '_', '-' or '.', "
            "not start with '.' or contain '..'"
        )
    return name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tensors_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    # safetensors refuses shared or non-contiguous storage; detached CPU clones avoid both.
    return st_save({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()})


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root`` (for trees written by third-party savers)."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_marker(directory: Path, names: Sequence[str] | None = None) -> None:
    """Write ``complete.json`` listing ``names`` (default: every file) with size and sha256."""
    if names is None:
        names = [
            p.relative_to(directory).as_posix()
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MARKER
        ]
    files = {
        rel: {"size": (directory / rel).stat().st_size, "sha256": _sha256(directory / rel)}
        for rel in names
    }
    atomic_write_json(directory / MARKER, {"format": FORMAT, "files": files})


def verify(directory: Path) -> dict[str, Any]:
    """Check a committed directory against its marker; :class:`CheckpointError` if not."""
    marker = directory / MARKER
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory} does not exist")
    if not marker.is_file():
        raise CheckpointError(
            f"checkpoint {directory} is incomplete (no {MARKER}); it was interrupted while "
            "being written — resume from an earlier checkpoint"
        )
    try:
        info: dict[str, Any] = read_json(marker)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {directory}: unreadable {MARKER} ({exc})") from exc
    for rel, meta in info.get("files", {}).items():
        p = directory / rel
        if not p.is_file() or p.stat().st_size != meta["size"] or _sha256(p) != meta["sha256"]:
            raise CheckpointError(f"checkpoint {directory}: file {rel} is missing or corrupted")
    return info


def commit_dir(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` directory to ``final``, replacing an older one."""
    old: Path | None = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    return tmp


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- RNG -----------------------------------------------------------------------------


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"torch_cuda_{i}"] = s
    return out


def rng_json() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    out: dict[str, Any] = {"python": [version, list(internal), gauss]}
    np = sys.modules.get("numpy")
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        out["numpy"] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    return out


def restore_rng(tensors: Mapping[str, torch.Tensor], js: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted(k for k in tensors if k.startswith("torch_cuda_"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    if "python" in js:
        version, internal, gauss = js["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in js:
        import numpy as np

        name, keys, pos, has_gauss, cached = js["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# --- optimizer -----------------------------------------------------------------------


def optimizer_payload(
    optimizer: torch.optim.Optimizer | None, names: Sequence[str], num_steps: int
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """AdamW state as (tensors, JSON) keyed by parameter name instead of position."""
    tensors: dict[str, torch.Tensor] = {}
    js: dict[str, Any] = {"param_names": list(names), "num_steps": num_steps, "steps": {}}
    if optimizer is None:
        js["hparams"] = None
        return tensors, js
    sd = optimizer.state_dict()
    group = sd["param_groups"][0]
    js["hparams"] = {k: v for k, v in group.items() if k != "params"}
    for idx, name in enumerate(names):
        st = sd["state"].get(idx)
        if not st:
            continue
        js["steps"][name] = int(float(st["step"]))
        tensors[f"{name}::exp_avg"] = st["exp_avg"]
        tensors[f"{name}::exp_avg_sq"] = st["exp_avg_sq"]
    return tensors, js


def optimizer_state_dict(
    tensors: Mapping[str, torch.Tensor], js: Mapping[str, Any], names: Sequence[str]
) -> dict[str, Any]:
    """Rebuild a ``torch.optim.AdamW`` state dict for parameters in ``names`` order."""
    if list(js["param_names"]) != list(names):
        raise CheckpointError(
            "optimizer state was saved for different trainable parameters "
            f"({len(js['param_names'])} vs {len(names)} tensors)"
        )
    state: dict[int, dict[str, torch.Tensor]] = {}
    for idx, name in enumerate(names):
        if name not in js["steps"]:
            continue
        state[idx] = {
            # AdamW keeps ``step`` as a float32 scalar tensor; integers are exact in it.
            "step": torch.tensor(float(js["steps"][name]), dtype=torch.float32),
            "exp_avg": tensors[f"{name}::exp_avg"],
            "exp_avg_sq": tensors[f"{name}::exp_avg_sq"],
        }
    hp = dict(js["hparams"])
    hp["betas"] = tuple(hp["betas"])
    return {"state": state, "param_groups": [{**hp, "params": list(range(len(names)))}]}


# --- whole checkpoint ----------------------------------------------------------------


#: Files a training checkpoint may contain (others in the directory belong to someone else).
STATE_FILES = (
    "weights.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "rng.safetensors",
    "rng.json",
    "user_metadata.json",
    "spec.json",
)


def save_checkpoint(
    final: Path,
    *,
    weights: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None,
    num_steps: int,
    spec_json: Mapping[str, Any],
    user_metadata: Mapping[str, Any] | None,
) -> Path:
    """Write a complete checkpoint into ``final`` (marker last) and return its path."""
    final.mkdir(parents=True, exist_ok=True)
    # Un-complete an older checkpoint of the same name first, so a crash mid-rewrite can
    # never leave old files under a marker that vouches for them.
    (final / MARKER).unlink(missing_ok=True)
    _fsync_dir(final)
    opt_t, opt_js = optimizer_payload(optimizer, list(weights), num_steps)
    payload: dict[str, bytes] = {
        "weights.safetensors": _tensors_bytes(weights),
        "optimizer.json": _json_bytes(opt_js),
        "rng.safetensors": _tensors_bytes(rng_tensors()),
        "rng.json": _json_bytes(rng_json()),
        "user_metadata.json": _json_bytes(dict(user_metadata or {})),
        "spec.json": _json_bytes(dict(spec_json)),
    }
    if opt_t:
        payload["optimizer.safetensors"] = _tensors_bytes(opt_t)
    for fname in STATE_FILES:
        if fname not in payload:
            (final / fname).unlink(missing_ok=True)
    for fname, data in payload.items():
        atomic_write_bytes(final / fname, data)
    write_marker(final, sorted(payload))
    return final


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True) + "\n").encode("utf-8")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    return st_load(path.read_bytes()) if path.exists() else {}


def read_checkpoint(directory: Path) -> dict[str, Any]:
    """Verify and read a checkpoint written by :func:`save_checkpoint`."""
    listed = verify(directory).get("files", {})
    # Only files the marker lists belong to this checkpoint.
    opt_file = directory / "optimizer.safetensors" if "optimizer.safetensors" in listed else None
    try:
        return {
            "weights": _read_tensors(directory / "weights.safetensors"),
            "optimizer_tensors": _read_tensors(opt_file) if opt_file else {},
            "optimizer": read_json(directory / "optimizer.json"),
            "rng_tensors": _read_tensors(directory / "rng.safetensors"),
            "rng": read_json(directory / "rng.json"),
            "user_metadata": read_json(directory / "user_metadata.json"),
        }
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {directory} cannot be read: {exc}") from exc


def read_user_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``user_metadata`` stored with a complete checkpoint."""
    directory = Path(path)
    verify(directory)
    data: dict[str, Any] = read_json(directory / "user_metadata.json")
    return data

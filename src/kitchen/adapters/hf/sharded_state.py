"""Sharded training state: ``torch.distributed.checkpoint`` in safetensors, no pickle.

An FSDP run (``model.parallel: fsdp``) saves with DCP's ``HuggingFaceStorageWriter``: every
rank writes its own shards of the trainable parameters and AdamW moments, under the same
names as the single-process layout (:mod:`.state`), to one safetensors file whose header
records each shard's offset. DCP's default ``.metadata`` file is a pickle; this writer's
metadata is those JSON headers, so reading a checkpoint never unpickles anything::

    <state_dir>/<name>/
      sharded/shard-0000R-model-00001-of-00001.safetensors   rank R's shards
      optimizer.json, rng.safetensors, rng.json, user_metadata.json, spec.json
      complete.json                                          written last, lists all files

**Atomic.** Rank 0 removes an older ``complete.json`` first; all ranks write into a staging
directory; after a barrier rank 0 renames it to ``sharded/``, writes the small files and
then the marker. A crash at any point leaves either the complete checkpoint or one that
:func:`~kitchen.adapters.hf.state.verify` refuses, and the run resumes from the previous one.

**Resharding.** :func:`load_tensors` reads either layout (``sharded/`` or the
single-process ``weights.safetensors`` + ``optimizer.safetensors``) into either kind of
target, plain tensors or DTensors, through DCP's ``HuggingFaceStorageReader``: DCP reads
each target's region from whichever saved chunks overlap it. So a checkpoint written by 2
FSDP ranks loads into one process (or a replicated job), and a single-process checkpoint
loads into any number of FSDP ranks. Every rank must see the checkpoint directory (one
node, or a filesystem shared by all nodes).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.api import CheckpointException

from kitchen.adapters.hf import distributed as dist_mod
from kitchen.adapters.hf import state as st
from kitchen.errors import CheckpointError
from kitchen.io import atomic_write_bytes, read_json

SHARDED_DIR = "sharded"
#: The small files an FSDP checkpoint keeps beside ``sharded/``.
SIDE_FILES = ("optimizer.json", "rng.safetensors", "rng.json", "user_metadata.json", "spec.json")


def moment_names(name: str) -> tuple[str, str]:
    return f"{name}::exp_avg", f"{name}::exp_avg_sq"


def named_state(
    named_params: Sequence[tuple[str, torch.Tensor]], optimizer: torch.optim.Optimizer | None
) -> dict[str, torch.Tensor]:
    """Parameters and AdamW moments by checkpoint name (DTensors stay DTensors)."""
    out: dict[str, torch.Tensor] = {n: p.detach() for n, p in named_params}
    if optimizer is not None:
        for n, p in named_params:
            s = optimizer.state.get(p)
            if s:
                avg, avg_sq = moment_names(n)
                out[avg], out[avg_sq] = s["exp_avg"], s["exp_avg_sq"]
    return out


def save_sharded(
    final: Path,
    *,
    named_params: Sequence[tuple[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None,
    num_steps: int,
    spec_json: Mapping[str, Any],
    user_metadata: Mapping[str, Any] | None,
    is_main: bool,
) -> Path:
    """Collective: every rank calls it with the same ``final`` (rank 0's path)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    staging = ""
    if is_main:
        final.mkdir(parents=True, exist_ok=True)
        (final / st.MARKER).unlink(missing_ok=True)
        st._fsync_dir(final)
        staging = str(st.staging_dir(final / SHARDED_DIR))
    staging = dist_mod.broadcast_str(staging)
    try:
        # DCP gathers every rank's write errors and raises on all of them alike.
        dcp.save(
            named_state(named_params, optimizer),
            storage_writer=HuggingFaceStorageWriter(staging, save_distributed=True),
        )
    except BaseException as exc:
        if is_main:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, CheckpointException):
            raise CheckpointError(f"checkpoint {final} was not saved: {_reason(exc)}") from exc
        raise
    dist_mod.barrier()  # every rank's shard file is on disk (and fsynced) before the commit
    if is_main:
        names = [n for n, _ in named_params]
        _, opt_js = st.optimizer_payload(optimizer, names, num_steps)
        payload = {
            "optimizer.json": st._json_bytes(opt_js),
            "rng.safetensors": st._tensors_bytes(st.rng_tensors()),
            "rng.json": st._json_bytes(st.rng_json()),
            "user_metadata.json": st._json_bytes(dict(user_metadata or {})),
            "spec.json": st._json_bytes(dict(spec_json)),
        }
        for stale in ("weights.safetensors", "optimizer.safetensors"):
            (final / stale).unlink(missing_ok=True)
        st.commit_dir(Path(staging), final / SHARDED_DIR)
        for fname, data in payload.items():
            atomic_write_bytes(final / fname, data)
        shards = sorted(
            p.relative_to(final).as_posix() for p in (final / SHARDED_DIR).iterdir() if p.is_file()
        )
        st.write_marker(final, sorted(payload) + shards)
    dist_mod.barrier()  # nobody reads or overwrites it before it is committed
    return final


def is_sharded_checkpoint(info: Mapping[str, Any]) -> bool:
    """Whether a verified marker (:func:`state.verify`) describes the sharded layout."""
    return any(rel.startswith(SHARDED_DIR + "/") for rel in info.get("files", {}))


def tensor_source(directory: Path, info: Mapping[str, Any]) -> Path:
    return directory / SHARDED_DIR if is_sharded_checkpoint(info) else directory


def saved_shapes(source: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's full (unsharded) shape, from the safetensors headers alone."""
    from torch.distributed.checkpoint import HuggingFaceStorageReader

    meta = HuggingFaceStorageReader(str(source)).read_metadata()
    return {k: tuple(getattr(v, "size", ())) for k, v in meta.state_dict_metadata.items()}


def load_tensors(source: Path, targets: dict[str, torch.Tensor], *, collective: bool) -> None:
    """Fill ``targets`` in place from ``source`` (either layout), resharding as needed.

    ``collective``: every rank of the process group calls this together (FSDP targets);
    otherwise this process reads on its own."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader

    try:
        with warnings.catch_warnings():
            # "assuming the intent is to load in a single process": it is.
            warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
            dcp.load(
                targets,
                storage_reader=HuggingFaceStorageReader(str(source)),
                no_dist=not collective,
            )
    except (Exception, CheckpointException) as exc:
        raise CheckpointError(f"checkpoint {source} cannot be read: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """One line from DCP's ``CheckpointException`` (a ``BaseException`` whose text holds
    every failing rank's traceback): the failing ranks and the last error line."""
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    ranks = getattr(exc, "failures", None)
    where = f"rank(s) {sorted(ranks)}: " if isinstance(ranks, dict) else ""
    return where + (lines[-1] if lines else type(exc).__name__)


def marker_files(directory: Path) -> dict[str, Any]:
    """The files a checkpoint's marker lists, without hashing them (layout detection)."""
    try:
        files: dict[str, Any] = read_json(directory / st.MARKER).get("files", {})
    except (OSError, ValueError):
        return {}
    return files


def restore(
    directory: Path,
    trainable: list[tuple[str, torch.nn.Parameter]],
    *,
    collective: bool,
    optimizer: bool = True,
) -> tuple[torch.optim.Optimizer | None, int]:
    """Load a checkpoint of either layout into ``trainable`` (plain or sharded) and
    rebuild AdamW with the saved moments; returns ``(optimizer, num_steps)``. The RNG
    state is restored too. Names and shapes are checked before anything is written.
    ``optimizer=False``: the weights only (``load_weights``), RNG untouched."""
    info = st.verify(directory)
    source = tensor_source(directory, info)
    try:
        opt_js = read_json(directory / "optimizer.json")
        rng = (st._read_tensors(directory / "rng.safetensors"), read_json(directory / "rng.json"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {directory} cannot be read: {exc}") from exc
    names = [n for n, _ in trainable]
    saved = set(opt_js.get("param_names", ()))
    if saved != set(names):
        missing = sorted(set(names) - saved)[:3]
        extra = sorted(saved - set(names))[:3]
        raise CheckpointError(
            f"checkpoint {directory} does not fit this model "
            f"(missing {missing}, unexpected {extra}); was it saved with another ModelSpec?"
        )
    shapes = saved_shapes(source)
    for n, p in trainable:
        if shapes.get(n) != tuple(p.shape):
            raise CheckpointError(
                f"checkpoint {directory}: {n} has shape {shapes.get(n)}, model has {tuple(p.shape)}"
            )
    targets: dict[str, torch.Tensor] = {n: p.detach() for n, p in trainable}
    opt: torch.optim.Optimizer | None = None
    if optimizer and opt_js.get("hparams") is not None:
        opt = torch.optim.AdamW([p for _, p in trainable])
        hp = dict(opt_js["hparams"])
        hp["betas"] = tuple(hp["betas"])
        opt.param_groups[0].update(hp)
        for n, p in trainable:
            if n not in opt_js["steps"]:
                continue
            state = {
                # AdamW keeps ``step`` as a float32 scalar tensor; integers are exact in it.
                "step": torch.tensor(float(opt_js["steps"][n]), dtype=torch.float32),
                "exp_avg": torch.zeros_like(p.detach()),
                "exp_avg_sq": torch.zeros_like(p.detach()),
            }
            opt.state[p] = state
            avg, avg_sq = moment_names(n)
            targets[avg], targets[avg_sq] = state["exp_avg"], state["exp_avg_sq"]
    with torch.no_grad():
        load_tensors(source, targets, collective=collective)
    for _, p in trainable:
        p.grad = None
    if not optimizer:
        return None, 0
    st.restore_rng(*rng)
    return opt, int(opt_js.get("num_steps", 0))

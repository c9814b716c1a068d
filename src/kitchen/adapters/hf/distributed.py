"""Data parallelism for the hf adapter under ``accelerate launch`` / ``torchrun``.

Every process runs the same recipe on the same data. When ``WORLD_SIZE > 1``:

- **Sharding** (the supervised workflow): every rank builds the same global batch (same
  data, same seeded order) and trains on its slice ``batch[rank::world_size]``. The weights
  are scaled by ``1 / weight(global batch)``; every rank can compute that locally because it
  holds the whole global batch, so no all-reduce is needed for it and the result is the
  same number an all-reduce of the shard weights would give.
- **Gradients** (:class:`~kitchen.adapters.hf.training.HfTrainingClient`): kitchen's
  objective is a *sum* over datums and positions, so the gradient of the global batch is the
  *sum* of the shards' gradients. ``optim_step`` all-reduces (SUM) the accumulated
  gradients in one flat bucket before clipping and AdamW, so every rank clips the same
  global norm and applies the same update. This is DDP's ``no_sync`` + reduce-at-the-end
  pattern, done once per optimiser step instead of once per backward, which keeps Tinker's
  semantics (any number of ``forward_backward`` calls accumulate before one ``optim_step``)
  and lets a rank hold an empty shard. It is also why the model is not wrapped in
  ``DistributedDataParallel``: DDP averages (not sums) and reduces on every backward.
- **Metrics**: ``forward_backward`` sums ``loss:sum`` / ``num_tokens`` (and the loss
  denominator) over ranks, so the logged loss is the global batch's, equal to one process
  on the combined batch. ``forward`` stays local (no collective), so evaluation can run on
  any subset of ranks.
- **Start**: trainable parameters are broadcast from rank 0 at load, so a random init that
  differed between processes could not make ranks drift.
- **Writes**: only rank 0 writes the run directory (config, metrics, checkpoints, final
  weights). :func:`run_recipe` gives the other ranks a throw-away scratch run directory and
  the training client skips checkpoint and sampler-weight writes there.

Every collective runs on the training client's single worker thread, in submission order,
which is the same on every rank because every rank runs the same workflow.

The process group is created with accelerate's ``PartialState`` when accelerate is
installed (so ``accelerate launch`` settings are honoured), else with
``torch.distributed.init_process_group`` (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel job."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(*names: str, default: int) -> int:
    for n in names:
        v = os.environ.get(n)
        if v not in (None, ""):
            return int(v)
    return default


def detect() -> DataParallel:
    """Rank and world size from the launcher's environment (no process group needed)."""
    world = _env_int("WORLD_SIZE", default=1)
    rank = _env_int("RANK", default=0)
    local = _env_int("LOCAL_RANK", default=rank)
    return DataParallel(rank=rank, world_size=world, local_rank=local)


def is_main_process() -> bool:
    return detect().is_main


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's slice of a global batch: every ``world_size``-th item from ``rank``."""
    return list(items[rank::world_size])


def init_process_group(device_type: str = "cpu") -> DataParallel:
    """Join the launcher's process group (idempotent) and return this rank's place."""
    import torch.distributed as dist

    dp = detect()
    if dp.world_size <= 1 or (dist.is_available() and dist.is_initialized()):
        return dp
    try:
        from accelerate import PartialState

        PartialState(cpu=device_type == "cpu")
    except ImportError:  # accelerate is optional; torchrun sets the same variables
        pass
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DataParallel(dist.get_rank(), dist.get_world_size(), dp.local_rank)


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum a few floats over all ranks (float64, one collective)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(x) for x in t]


def all_reduce_gradients(params: Sequence[Any]) -> None:
    """SUM every parameter's ``.grad`` over ranks in one flat bucket.

    A parameter without a gradient (nothing flowed into it on this rank, e.g. an empty
    shard) takes part as zeros, so every rank sends the same layout.
    """
    import torch
    import torch.distributed as dist

    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[Any, list[Any]] = {}
    for p in params:
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def broadcast_parameters(params: Sequence[Any], src: int = 0) -> None:
    """Copy rank ``src``'s values of ``params`` to every rank."""
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=src)


def broadcast_str(value: str, src: int = 0) -> str:
    """Rank ``src``'s ``value`` on every rank (UTF-8 bytes in a tensor: no pickling)."""
    import torch
    import torch.distributed as dist

    data = torch.tensor(list(value.encode("utf-8")), dtype=torch.uint8)
    size = torch.tensor([data.numel()], dtype=torch.int64)
    dist.broadcast(size, src=src)
    if int(size) == 0:
        return ""
    buf = data if dist.get_rank() == src else torch.zeros(int(size), dtype=torch.uint8)
    dist.broadcast(buf, src=src)
    return bytes(buf.tolist()).decode("utf-8")


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# --- running a recipe on every rank ----------------------------------------------------


def _copy_for_resume(src: Path, dst: Path) -> None:
    """What a non-main rank needs to resume: rank 0's run directory, minus bulky extras.

    Sharded (FSDP) checkpoint tensors stay behind: every rank reads them from rank 0's run
    directory (see ``HfTrainingClient._checkpoint_dir``)."""
    shutil.copytree(
        src,
        dst,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("sampler_weights", "*.png", "sharded"),
    )


def run_recipe(
    recipe: Any,
    *,
    adapters: str = "hf",
    config: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    **kwargs: Any,
) -> Any:
    """:func:`kitchen.launch.run_recipe` for one rank of a data-parallel job.

    Rank 0 runs in ``run_dir`` (or resumes ``resume``) as a single process would. Other
    ranks run the same recipe in a scratch directory that is deleted afterwards (on resume,
    a copy of rank 0's checkpoints, whose weights and optimiser state are every rank's), so
    nothing but rank 0 writes the run directory. Returns the ``RunResult`` (rank 0's
    is the one that matters).
    """
    from kitchen.launch import run_recipe as _run

    dp = detect()
    if dp.is_main:
        return _run(
            recipe,
            adapters=adapters,
            config=config,
            overrides=overrides,
            run_dir=run_dir,
            resume=resume,
            **kwargs,
        )
    scratch = Path(tempfile.mkdtemp(prefix=f"kitchen-rank{dp.rank}-"))
    try:
        kwargs.setdefault("stage_events", False)
        kwargs["progress"] = None
        if resume is not None:
            _copy_for_resume(Path(resume), scratch / "run")
            return _run(recipe, adapters=adapters, resume=scratch / "run", **kwargs)
        return _run(
            recipe,
            adapters=adapters,
            config=config,
            overrides=overrides,
            run_dir=scratch / "run",
            **kwargs,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

"""One rank of the FSDP client-level checks in ``tests/hf/test_fsdp.py`` (run by torchrun).

For each mode it trains the tiny model with ``parallel=fsdp`` on :func:`global_batches`
(each rank takes ``batch[rank::world]``, split over two ``forward_backward`` calls so
gradients accumulate; the last batch leaves rank 1 an empty shard), then writes
``<out>/<mode>/rank<R>.json`` with the global losses and grad norms, this rank's shard
bytes, a ``save_state`` checkpoint and the sampler weights. Finally it loads the
single-process checkpoint ``<ref>/<mode>/ckpt`` (saved after step 2), redoes the last step
and records it, which checks the 1 -> 2 rank direction of a checkpoint; then loads the
single-process sampler weights with ``load_weights`` and saves them again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

STEPS = 3
CLIP = 0.05  # small enough that every step is clipped: the global norm decides the scale


def _prompt() -> Any:
    from kitchen.ports.types import ModelInput

    return ModelInput.from_ints([5, 9, 17, 33, 2])


def global_batches(vocab: int) -> list[list[list[int]]]:
    from kitchen.testing.datums import make_sequences

    seqs = make_sequences(vocab, 11, 6, seed=3)
    lengths = [7, 5, 7, 3, 6, 7, 4, 7, 5, 6, 7]
    seqs = [s[:n] for s, n in zip(seqs, lengths, strict=True)]
    return [seqs[0:5], seqs[5:10], seqs[10:11]]  # 5, 5, then 1 datum: rank 1 gets none


def step(client: Any, batch: list[list[int]], rank: int, world: int) -> dict[str, float]:
    """One optimiser step on this rank's shard of ``batch`` in two accumulating calls."""
    from kitchen.ports.types import AdamParams
    from kitchen.testing.datums import ce_datum

    mine = [ce_datum(s) for s in batch[rank::world]]
    half = (len(mine) + 1) // 2
    loss = 0.0
    for part in (mine[:half], mine[half:]):
        if not part and world == 1:
            continue  # alone, an empty call is an error; in a job every rank must call
        out = client.forward_backward(part, "cross_entropy").result()
        loss += out.metrics["loss:sum"]
    opt = client.optim_step(AdamParams(learning_rate=5e-2, grad_clip_norm=CLIP)).result()
    return {"loss": loss, "grad_norm": opt.metrics["grad_norm"]}


def torn_save(client: Any, rank: int) -> dict[str, str]:
    """Save ``torn`` once, then overwrite it while rank 1's write fails half-way."""
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    path = client.save_state("torn").result().path
    write = HuggingFaceStorageWriter.write_data

    def failing(self: Any, plan: Any, planner: Any) -> Any:
        if rank == 1:
            raise OSError("simulated: disk full")
        return write(self, plan, planner)

    HuggingFaceStorageWriter.write_data = failing  # type: ignore[method-assign]
    try:
        client.save_state("torn").result()
    except Exception as exc:  # every rank sees the failure
        return {"path": path, "error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        HuggingFaceStorageWriter.write_data = write  # type: ignore[method-assign]
    return {"path": path, "error": ""}


def spec(mode: str, parallel: str) -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import tiny_spec

    # Full mode also recomputes activations in backward (gradient checkpointing), which
    # re-enters each sharded layer's forward during backward.
    return tiny_spec(mode, parallel=parallel, seed=7, gradient_checkpointing=mode == "full")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--modes", default="full,lora,qlora")
    args = parser.parse_args()

    import torch

    from kitchen.adapters.hf import distributed, fsdp
    from kitchen.adapters.hf.training import HfTrainingClient
    from kitchen.testing.datums import ce_datum

    torch.set_num_threads(1)
    dp = distributed.detect()
    for mode in args.modes.split(","):
        out = Path(args.out) / mode
        # Each rank has its own state_dir; sharded checkpoints still land in rank 0's.
        client = HfTrainingClient(spec(mode, "fsdp"), state_dir=str(out / f"state-r{dp.rank}"))
        record: dict[str, Any] = {"steps": []}
        batches = global_batches(128)
        for batch in batches:
            record["steps"].append(step(client, batch, dp.rank, dp.world_size))
        # forward (no grad) is collective under fsdp too: rank 1's share of the 1-datum
        # batch is empty, so it runs the dummy forward while rank 0 evaluates the datum.
        mine = [ce_datum(x) for x in batches[-1][dp.rank :: dp.world_size]]
        record["forward"] = client.forward(mine, "cross_entropy").result().metrics["loss:sum"]
        if mode != "full":  # DPO's adapter_disabled reference: the frozen base, still sharded
            base = client.forward_with_adapter_disabled(mine, "cross_entropy").result()
            record["base_forward"] = base.metrics["loss:sum"]
        record["footprint"] = client._worker.submit(
            lambda c=client: fsdp.shard_footprint(c._ensure().model, c._optimizer)
        ).result()
        record["full_params"] = sum(p.numel() for p in client.model.parameters())
        record["ckpt"] = client.save_state("ckpt", {"note": "fsdp"}).result().path
        record["torn"] = torn_save(client, dp.rank)
        record["sampler"] = client.save_weights_for_sampler("final").result().path
        # A sampling client over a gathered, unsharded snapshot: its logprobs of a prompt.
        snap = client.save_weights_and_get_sampling_client("snap")
        record["snapshot_logprobs"] = snap.compute_logprobs(_prompt()).result()[1:]
        client.load_state(str(Path(args.ref) / mode / "ckpt")).result()
        record["resumed_step"] = step(client, batches[-1], dp.rank, dp.world_size)
        # Weights only (Tinker's load_weights) from the single-process sampler weights.
        client.load_weights(str(Path(args.ref) / mode / "state/sampler_weights/final")).result()
        record["reloaded"] = client.save_weights_for_sampler("reloaded").result().path
        client.close()
        (out / f"rank{dp.rank}.json").write_text(json.dumps(record))
    distributed.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())

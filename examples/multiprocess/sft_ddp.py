"""Run a kitchen recipe on every rank of a data-parallel job.

    accelerate launch --num_processes 2 --cpu examples/multiprocess/sft_ddp.py \\
        --run-dir runs/sft-ddp --set max_steps=20
    torchrun --nproc-per-node 2 examples/multiprocess/sft_ddp.py --run-dir runs/sft-ddp

Every rank builds the same global batch and trains on its slice; gradients are summed over
ranks at each optimiser step, so the loss curve equals one process on the combined batch
(``tests/hf/test_multiprocess.py`` checks it). Only rank 0 writes ``--run-dir``. One
process (``python examples/multiprocess/sft_ddp.py ...``) runs the same recipe alone.

``kitchen run`` itself is not rank-aware yet (every rank would create the same run
directory); this script is the rank-aware entry point (see docs/hf.md).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="sft")
    parser.add_argument("--adapters", default="hf")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    import torch

    from kitchen.adapters.hf import distributed
    from kitchen.recipes.registry import get_recipe

    torch.set_num_threads(1)  # one core per rank: ranks share the machine
    dp = distributed.detect()
    result = distributed.run_recipe(
        get_recipe(args.recipe),
        adapters=args.adapters,
        overrides=args.overrides,
        run_dir=args.run_dir,
        resume=args.resume,
        stage_events=dp.is_main,
    )
    if dp.is_main:
        losses = [r["loss"] for r in result.run_dir.metrics() if "loss" in r]
        print(
            json.dumps(
                {"world_size": dp.world_size, "run_dir": str(result.run_dir.root), "losses": losses}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

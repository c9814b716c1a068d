"""``kitchen export RUN_DIR --out DIR [--merged] [--gguf f16|q8_0 ...]``."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kitchen.errors import UsageError
    from kitchen.optional import require
    from kitchen.rundir import refuse_run_records

    refuse_run_records(args.out)
    out = Path(args.out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise UsageError(f"--out {out}: {p} is a file; export needs a directory there")

    export = require("kitchen.adapters.hf.export", "hf")
    written = export.export_run(
        args.run_dir, args.out, merged=args.merged, gguf=tuple(args.gguf or ())
    )
    for key in ("adapter", "model", "merged"):
        if key in written:
            print(f"{key}: {written[key]}")
    for t, info in written.get("gguf", {}).items():
        print(f"gguf {t}: {info['path']} (read back: max rel. error {info['rel_max_err']:.1e})")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a run's adapter (safetensors) or merged model")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--merged", action="store_true", help="also write the merged full model")
    p.add_argument(
        "--gguf",
        action="append",
        choices=("f16", "q8_0"),
        metavar="TYPE",
        help="also write a llama.cpp GGUF file of the (merged) model: f16 or q8_0; repeatable",
    )
    p.set_defaults(func=_cmd)

"""``kitchen report RUN_DIR --out FILE.png``."""

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
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name such as {out}/report.png")
    if out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"--out {out}: {out.parent} is a file, not a directory")
    require("matplotlib", "hf")  # matplotlib ships with kitchen[hf]
    from kitchen.reporting.plots import plot_run

    drawn = plot_run(args.run_dir, args.out)
    print(f"wrote {args.out} ({', '.join(drawn)})")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="plot a run's loss/reward curves to a PNG")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.set_defaults(func=_cmd)

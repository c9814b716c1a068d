"""``kitchen describe --cache RUN_DIR``: each cacheable stage's key and hit or miss."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from kitchen.errors import UsageError
from kitchen.io import read_jsonl
from kitchen.rundir import RunDir


def describe_cache(run_dir: str) -> int:
    run = RunDir.open(run_dir)
    path = run.root / "cache.jsonl"
    records = read_jsonl(path)
    if not path.exists():
        raise UsageError(f"{run.root} has no cache.jsonl: none of its stages is cacheable")
    table = Table(title=f"stage cache · {run.root.name}")
    for col in ("stage path", "result", "key", "inputs", "code"):
        table.add_column(col)
    for r in records:
        comp = r.get("components", {})
        inputs = ", ".join(f"{k}={v[:18]}…" for k, v in comp.get("inputs", {}).items())
        table.add_row(
            r["path"],
            "hit" if r["hit"] else "miss",
            r["key"][:16],
            inputs or "-",
            comp.get("code", ""),
        )
    Console(width=160).print(table)
    return 0

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
    for line, r in enumerate(records, 1):
        comp = r.get("components", {})
        inputs_map = comp.get("inputs", {}) if isinstance(comp, dict) else None
        if (
            not isinstance(r.get("path"), str)
            or not isinstance(r.get("hit"), bool)
            or not isinstance(r.get("key"), str)
            or not isinstance(inputs_map, dict)
        ):
            raise UsageError(
                f"{path} line {line} is not a stage-cache record (needs path, hit, key and "
                "components.inputs); remove or repair that line"
            )
        inputs = ", ".join(f"{k}={str(v)[:18]}…" for k, v in inputs_map.items())
        table.add_row(
            r["path"],
            "hit" if r["hit"] else "miss",
            r["key"][:16],
            inputs or "-",
            str(comp.get("code", "")),
        )
    Console(width=160).print(table)
    return 0

"""Command line: ``train`` projects in the background and watch them; ``status`` reads the
registry (from any process, at any time).

    python -m examples.codebase_adapters train [SOURCE_DIR ...] --work-dir out/adapters
    python -m examples.codebase_adapters status --work-dir out/adapters [PROJECT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from examples.codebase_adapters.service import AdapterService, StatusRegistry

PROJECTS = Path(__file__).resolve().parent / "projects"


def _line(rec: dict) -> str:
    state = rec.get("state", "?")
    extra = ""
    if state == "training" and rec.get("progress"):
        p = rec["progress"]
        extra = f" {100 * p.get('fraction', 0):5.1f}%"
        if "step" in p:
            extra += f" (step {p['step']}/{p['total']})"
    elif state == "done":
        extra = f" val_loss={rec.get('val_loss')} adapter={rec.get('adapter')}"
    elif state == "failed":
        extra = f" reason: {rec.get('reason')}"
    return f"{rec['project']:<12} {state:<9}{extra}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.codebase_adapters")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one adapter per source tree, in the background")
    t.add_argument("sources", nargs="*", type=Path, help="default: the bundled sample projects")
    t.add_argument("--work-dir", type=Path, default=Path("out/codebase_adapters"))
    t.add_argument("--adapters", choices=("hf", "noop"), default="hf")
    t.add_argument("--workers", type=int, default=1)
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--memory-mb", type=float, default=600.0, help="memory one job needs")
    t.add_argument("--parser", choices=("auto", "tree-sitter", "ast"), default="auto")
    s = sub.add_parser("status", help="print the status registry")
    s.add_argument("project", nargs="?")
    s.add_argument("--work-dir", type=Path, default=Path("out/codebase_adapters"))
    s.add_argument("--json", action="store_true")
    a = p.parse_args(argv)

    if a.cmd == "status":
        path = a.work_dir / "status.json"
        if not path.is_file():
            print(f"no registry at {path}; start jobs with `train` first", file=sys.stderr)
            return 2
        records = StatusRegistry.read(path)
        if a.project:
            if a.project not in records:
                print(f"unknown project {a.project!r}; known: {sorted(records)}", file=sys.stderr)
                return 2
            records = {a.project: records[a.project]}
        if a.json:
            print(json.dumps(records, indent=2))
        else:
            for rec in records.values():
                print(_line(rec))
        return 0

    sources = a.sources or sorted(d for d in PROJECTS.iterdir() if d.is_dir())
    done: list[str] = []
    service = AdapterService(
        a.work_dir,
        adapters=a.adapters,
        workers=a.workers,
        epochs=a.epochs,
        memory_mb=a.memory_mb,
        parser=a.parser,
        on_complete=lambda project, rec: done.append(f"notify: {_line(rec)}"),
    )
    try:
        futures = [service.submit(src.name, src) for src in sources]
        print(f"queued {len(futures)} project(s); registry: {a.work_dir / 'status.json'}")
        while not all(f.done() for f in futures):
            time.sleep(2.0)
            print(" | ".join(_line(r) for r in service.status().values()), flush=True)
            while done:
                print(done.pop(0), flush=True)
        while done:
            print(done.pop(0), flush=True)
    finally:
        service.close()
    final = service.status()
    for rec in final.values():
        print(_line(rec))
    return 0 if all(r["state"] == "done" for r in final.values()) else 1

"""The Python snippets in the user docs run as written.

Every ```python block of README.md and of each docs/*.md file runs; a file's blocks share
one namespace and run in order (a later block may use what an earlier one defined). Blocks
that cannot run offline are fenced as ```py instead, with a line in the doc saying why.

Each file runs in a fresh interpreter with the working directory in ``tmp_path``: some
snippets change process-wide state on purpose (an OpenTelemetry tracer provider, the
structlog configuration, the recipe and normalise-rule registries), and that must not leak
into other tests or into the next file. The namespace is registered as a module so that
functions defined in a snippet have an import path (``to_json``/``from_json`` round trips,
``inspect.getsource``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _docs() -> list[str]:
    """README.md plus every docs/*.md file that holds at least one python block."""
    candidates = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [
        p.relative_to(ROOT).as_posix()
        for p in candidates
        if BLOCK.search(p.read_text(encoding="utf-8"))
    ]


DOCS = _docs()

# Runs in the child interpreter: argv[1] is the doc, stdin the JSON list of its blocks.
_DRIVER = r"""
import json, linecache, sys, traceback, types
doc = sys.argv[1]
blocks = json.load(sys.stdin)
name = "snippet_" + doc.replace("/", "_").removesuffix(".md").replace(".", "_")
module = types.ModuleType(name)
sys.modules[name] = module
for i, code in enumerate(blocks):
    filename = f"{doc}#snippet{i}"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        exec(compile(code, filename, "exec"), module.__dict__)
    except BaseException:
        traceback.print_exc()
        print(f"\n{doc} snippet {i} failed:\n{code}", file=sys.stderr)
        sys.exit(1)
"""


def test_docs_are_collected() -> None:
    assert "README.md" in DOCS and "docs/getting_started.md" in DOCS
    assert len(DOCS) >= 5, DOCS


@pytest.mark.parametrize("doc", DOCS)
def test_snippets_run(doc: str, tmp_path: Path) -> None:
    blocks = BLOCK.findall((ROOT / doc).read_text(encoding="utf-8"))
    assert blocks, f"{doc} has no python snippets"
    env = dict(os.environ)
    # Snippets import only the installed package (kitchen.testing included), never the
    # repository's `tests`; caches that libraries write (W&B logs, ...) stay in tmp_path.
    env["XDG_CACHE_HOME"] = str(tmp_path / ".cache")
    env["MPLCONFIGDIR"] = str(tmp_path / ".cache" / "matplotlib")
    env.pop("KITCHEN_CACHE_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, doc],
        input=json.dumps(blocks),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{doc}:\n{proc.stderr[-6000:]}"


def test_cli_reference_covers_every_command_and_option() -> None:
    """docs/cli.md names every subcommand and every option its parser defines."""
    import argparse

    from kitchen.cli import main as cli

    cli._register_optional_commands()
    parser = cli.build_parser()
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"kitchen {name} {opt}"
        for name, p in sub.choices.items()
        for action in p._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt not in text
    ]
    missing += [f"## kitchen {name}" for name in sub.choices if f"## kitchen {name}" not in text]
    assert not missing, f"docs/cli.md does not document: {missing}"

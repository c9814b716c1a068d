"""In-process `kitchen` invocation and the clean-failure contract, shared by these tests.

Calling :func:`kitchen.cli.main.main` in process keeps property tests fast (no interpreter
start per example); a few tests use a real subprocess for the end-to-end path.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kitchen.cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def invoke(argv: Sequence[str]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse errors and --help
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return Result(code, out.getvalue(), err.getvalue())


def assert_clean_failure(result: Result, *needles: str, code: int = 2) -> None:
    """Exit ``code``, exactly one line on stderr starting with ``error:``, no traceback,
    and every ``needle`` (a file, field or row name) in that line."""
    lines = result.err.strip().splitlines()
    assert result.code == code, (result.code, result.err)
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ") and "Traceback" not in result.err, result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove a failure changed nothing)."""
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }

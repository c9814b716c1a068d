"""structlog configuration for the CLI and scripts."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is *now* (test runners and tools swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _CurrentStderr()


def default_logger(name: str = "kitchen") -> Any:
    """kitchen's logger: the app's structlog setup if it has one, else warnings+ to stderr.

    Libraries should not configure logging globally, but structlog's unconfigured default
    prints every level; this keeps kitchen quiet (and debug calls near free) until the
    application, or the kitchen CLI via :func:`configure_logging`, decides otherwise.
    """
    if structlog.is_configured():
        return structlog.get_logger(name)
    return structlog.wrap_logger(
        structlog.PrintLogger(file=_STDERR),  # type: ignore[arg-type]
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


#: Failure events the CLI reports itself, as its one ``error:`` line (they stay in
#: ``events.jsonl``).
REPORTED_BY_CLI = frozenset({"stage_failed", "workflow_failed"})


def _drop_reported(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if event.get("event") in REPORTED_BY_CLI:
        raise structlog.DropEvent
    return event


def configure_logging(
    level: str = "info", *, json: bool = False, cli_reports_failures: bool = False
) -> None:
    """Human-readable (or JSON) logs on stderr at ``level``; debug calls are filtered cheaply.

    ``cli_reports_failures`` leaves the stage/workflow failure events off the console
    (the CLI prints the error as one line instead)."""
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        lvl = logging.INFO
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *([_drop_reported] if cli_reports_failures else []),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )

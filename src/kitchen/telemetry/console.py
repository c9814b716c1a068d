"""Rich progress bars for loops of known length."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ConsoleProgress:
    """Shows one bar per running loop marked ``progress=True``; nested loops stack."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=False,
        )
        self._active = 0

    def start(self, description: str, total: int, completed: int = 0) -> TaskID:
        if self._active == 0:
            self._progress.start()
        self._active += 1
        return self._progress.add_task(description, total=total, completed=completed, status="")

    def advance(self, task: TaskID, status: str | None = None) -> None:
        kwargs: dict[str, Any] = {"advance": 1}
        if status is not None:
            kwargs["status"] = status
        self._progress.update(task, **kwargs)

    def status(self, text: str) -> None:
        for task in self._progress.tasks:
            if not task.finished:
                self._progress.update(task.id, status=text)

    def stop(self, task: TaskID) -> None:
        """End a loop's bar. Inner bars are removed (a new one starts for every outer
        iteration); the outermost bar stays on screen, finished, as the run's summary."""
        self._active -= 1
        if self._active == 0:
            self._progress.stop()  # renders the last frame, the finished outer bar in it
        self._progress.remove_task(task)

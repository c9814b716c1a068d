"""Executors run the branches of a ``parallel`` block."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class BranchExecutor(Protocol):
    """Runs callables concurrently and returns their results (or raises) in order."""

    def run_all(self, tasks: Sequence[Callable[[], T]]) -> list[T]: ...


class ThreadExecutor:
    """One OS thread per branch, all started before any is joined.

    Branches really run at the same time: a branch may block waiting for another (the
    test suite proves this with two branches that each wait on the other's event).
    ``max_threads`` bounds the threads; extra branches queue behind them.
    """

    def __init__(self, max_threads: int = 32) -> None:
        self.max_threads = max_threads

    def run_all(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        results: list[Any] = [None] * len(tasks)
        errors: list[BaseException | None] = [None] * len(tasks)
        slots = threading.BoundedSemaphore(self.max_threads)

        def runner(i: int, task: Callable[[], T]) -> None:
            with slots:
                try:
                    results[i] = task()
                except BaseException as exc:  # re-raised in the caller's thread
                    errors[i] = exc

        threads = [
            threading.Thread(target=runner, args=(i, t), name=f"kitchen-branch-{i}", daemon=True)
            for i, t in enumerate(tasks)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for err in errors:
            if err is not None:
                raise err
        return results


class SerialExecutor:
    """Runs branches one after another (debugging; deadlocks if branches wait on each other)."""

    def run_all(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        return [t() for t in tasks]

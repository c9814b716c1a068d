"""Futures returned by ports.

Ports return objects satisfying :class:`Future`: ``result(timeout)`` blocks, ``done()``
polls, and ``await fut`` works in async code. ``concurrent.futures.Future`` (what local
adapters produce from their worker thread) and the tinker SDK's ``APIFuture`` both fit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class Future(Protocol[T_co]):
    """What a port call hands back before the work is done."""

    def result(self, timeout: float | None = None) -> T_co: ...

    def done(self) -> bool: ...


class KFuture(concurrent.futures.Future[T], Generic[T]):
    """A ``concurrent.futures.Future`` that can also be awaited."""

    def __await__(self) -> Any:
        return asyncio.wrap_future(self).__await__()


def resolved(value: T) -> KFuture[T]:
    """A future that is already done with ``value``."""
    fut: KFuture[T] = KFuture()
    fut.set_result(value)
    return fut


def failed(exc: BaseException) -> KFuture[Any]:
    fut: KFuture[Any] = KFuture()
    fut.set_exception(exc)
    return fut


class SerialWorker:
    """One daemon thread that runs submitted jobs in order and returns futures.

    Adapters that own a model use it so exactly one thread touches the model while the
    caller goes on preparing the next batch (pipelining). Jobs run strictly in submission
    order, which is what makes ``forward_backward`` then ``optim_step`` well defined.
    """

    def __init__(self, name: str = "kitchen-worker") -> None:
        self._name = name
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> KFuture[T]:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=self._name
                )
            inner = self._executor.submit(fn, *args, **kwargs)
        out: KFuture[T] = KFuture()

        def _copy(f: concurrent.futures.Future[T]) -> None:
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(f.result())

        inner.add_done_callback(_copy)
        return out

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=wait)
                self._executor = None

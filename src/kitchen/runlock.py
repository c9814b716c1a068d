"""An exclusive lock on a run directory for the lifetime of the process writing it.

Two ``kitchen run`` (or ``--resume``) on one run directory would interleave their appends
to ``metrics.jsonl`` and both rewrite ``checkpoints.jsonl``; the lock makes the second one
fail at once with "run DIR is in use by pid N" (exit 2).

The lock is ``fcntl.flock`` on ``<run>/.kitchen.lock``, which also records the holder's pid
and host. The kernel drops a flock when its holder dies, ``kill -9`` included, so a lock
file left behind by a dead process is simply taken over. Where flock is unavailable
(Windows, some network file systems) the recorded pid is checked instead: a lock whose pid
is not alive on this host is stale and taken over.

Scope: the lock serialises writers *on one machine* (one file system). A run directory on
a BlobStore URL is written through a local working copy (:mod:`kitchen.run_mirror`); the
lock is taken on that working copy, so two processes on one machine writing one URL are
serialised, but object stores have no locks: two machines writing the same URL are not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path
from typing import IO

from kitchen.errors import UsageError

LOCK_NAME = ".kitchen.lock"


class RunInUse(UsageError):
    """Another live process holds the run directory's lock."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def _holder(path: Path) -> tuple[int | None, str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return None, ""
    pid = int(text[0]) if text and text[0].isdigit() else None
    return pid, text[1] if len(text) > 1 else ""


class RunLock:
    """Hold ``<root>/.kitchen.lock`` exclusively until :meth:`release` (or process exit)."""

    def __init__(self, root: str | os.PathLike[str], location: str | None = None) -> None:
        self.root = Path(root)
        self.location = location or str(root)
        self.path = self.root / LOCK_NAME
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> RunLock:
        if self._fh is not None:
            return self
        try:
            fh = open(self.path, "a+", encoding="utf-8")  # held until release()
        except OSError as exc:
            raise UsageError(
                f"cannot lock run directory {self.location}: {exc.strerror or exc}; "
                "choose a writable --run-dir"
            ) from None
        try:
            self._lock(fh)
        except BaseException:
            fh.close()
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()} {socket.gethostname()}\n")
        fh.flush()
        self._fh = fh
        return self

    def _lock(self, fh: IO[str]) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            self._check_pid()
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                self._in_use()
            self._check_pid()  # ENOLCK and friends: no flock on this file system

    def _check_pid(self) -> None:
        pid, host = _holder(self.path)
        if pid is not None and pid != os.getpid() and host in ("", socket.gethostname()):
            if _pid_alive(pid):
                self._in_use()

    def _in_use(self) -> None:
        pid, host = _holder(self.path)
        who = f"pid {pid}" if pid is not None else "another process"
        if host and host != socket.gethostname():
            who += f" on {host}"
        raise RunInUse(
            f"run {self.location} is in use by {who}; wait for it to finish, or stop it "
            "(a crashed run's lock is taken over automatically)"
        )

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
        fh.close()  # closing the file drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

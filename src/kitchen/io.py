"""Crash-safe file writes. Every file kitchen writes goes through here.

A write lands in a temporary file in the same directory, is flushed and fsynced, then
renamed over the destination, so a crash or ``kill -9`` leaves either the old or the new
content, never a torn file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_record(path: str | os.PathLike[str], what: str = "record") -> dict[str, Any]:
    """A JSON object kitchen wrote (config.json, manifest.json, a checkpoint's state); a
    damaged one is a one-line :class:`~kitchen.errors.UsageError` naming the file."""
    from kitchen.errors import UsageError

    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} is missing") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise UsageError(
            f"{path} is damaged ({type(exc).__name__}: {exc}); restore it from a backup, "
            f"or fix the {what} by hand"
        ) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is damaged: expected a JSON object, got {type(data).__name__}")
    return data


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line. A torn last line (crash mid-append) is skipped by ``read_jsonl``."""
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSONL file of objects, ignoring a torn final line left by a crash.

    Any other bad line (garbage, a non-object, bad UTF-8) is a one-line
    :class:`~kitchen.errors.UsageError` naming the file and the line."""
    from kitchen.errors import UsageError

    p = Path(path)
    if not p.exists():
        return []
    try:
        lines = p.read_bytes().split(b"\n")
    except OSError as exc:
        raise UsageError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            if i == len(lines) - 1:
                break  # torn tail from an interrupted append
            raise UsageError(
                f"{p} line {i + 1} is damaged ({type(exc).__name__}: {exc}); remove or "
                "repair that line"
            ) from None
        if not isinstance(record, dict):
            raise UsageError(
                f"{p} line {i + 1} is damaged: expected a JSON object, got "
                f"{type(record).__name__}; remove or repair that line"
            )
        out.append(record)
    return out


def rewrite_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> None:
    """Atomically replace a JSONL file with ``records``."""
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
    atomic_write_text(path, text)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: The largest config/spec file kitchen reads (a config is a few KiB; this only stops a
#: runaway read such as a symlink to ``/dev/zero``).
MAX_TEXT_FILE_BYTES = 16 * 1024 * 1024


def read_bytes_bounded(
    path: str | os.PathLike[str], *, what: str = "file", max_bytes: int = MAX_TEXT_FILE_BYTES
) -> bytes:
    """The bytes of a *regular* file of at most ``max_bytes``.

    Directories, FIFOs, devices and sockets are refused before they are opened for reading
    (a FIFO would block forever, ``/dev/zero`` would never end), and every failure is a
    one-line :class:`~kitchen.errors.UsageError` naming the file.
    """
    import stat

    from kitchen.errors import UsageError

    p = Path(path)
    try:
        info = os.stat(p)
    except FileNotFoundError:
        raise UsageError(f"{what} {p} does not exist") from None
    except OSError as exc:
        raise UsageError(f"{what} {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{what} {p} is a directory; give a file")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(
            f"{what} {p} is not a regular file (a FIFO, device or socket); give a file"
        )
    if info.st_size > max_bytes:
        raise UsageError(f"{what} {p} is {info.st_size} bytes, over the limit of {max_bytes}")
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot read it ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat above
            raise UsageError(f"{what} {p} is not a regular file; give a file")
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if total > max_bytes:
        raise UsageError(f"{what} {p} is over the limit of {max_bytes} bytes")
    return b"".join(chunks)


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text (an optional UTF-8 BOM is dropped); anything else is a UsageError that
    says which encoding was found and to save the file as UTF-8."""
    from kitchen.errors import UsageError

    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UsageError(f"{name} is UTF-16 text; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise UsageError(f"{name} contains NUL bytes at offset {text.index(chr(0))}; is it text?")
    return text


def read_text_bounded(
    path: str | os.PathLike[str], *, what: str = "file", max_bytes: int = MAX_TEXT_FILE_BYTES
) -> str:
    """:func:`read_bytes_bounded` decoded as UTF-8 (see :func:`decode_text`)."""
    return decode_text(read_bytes_bounded(path, what=what, max_bytes=max_bytes), f"{what} {path}")

"""``HfDatasetStore``: the DatasetStore port over local files and fsspec URLs.

Reads JSONL / JSON, Parquet and CSV/TSV (optionally compressed, e.g. ``.jsonl.gz``) from a
local path or any fsspec URL (``memory://``, ``file://``, ``s3://`` ...), and directories
written by ``datasets.Dataset.save_to_disk``. It never contacts the Hugging Face Hub: a
source that is neither a file nor a URL is an error telling you to download it first.

Files are parsed here (not by ``datasets.load_dataset``) so every row keeps its 0-based
index and exact content, and a malformed JSON line is reported like any other bad row.
Every row is validated against its format (see :mod:`kitchen.adapters.hf.rows`):

- ``on_bad_row="error"`` (default): the first bad row raises
  :class:`~kitchen.errors.DataError` naming the file, the row and the field.
- ``on_bad_row="quarantine"``: each bad row is appended to
  ``<quarantine_dir>/rejected.jsonl`` as ``{"source", "index", "field", "reason", "row"}``;
  the dataset keeps the good rows, reports ``rejected_count`` and a warning is logged.
  Nothing is dropped silently: ``len(ds) + ds.rejected_count == ds.rows_read``.

The returned :class:`HfDataset` satisfies :class:`kitchen.ports.Dataset`; ``to_hf()``
gives a ``datasets.Dataset`` for ``map``/``shuffle``/``train_test_split``.

CSV cells are strings; an empty cell is missing (like pandas/datasets), and a ``messages``
cell (or a preference ``prompt`` cell starting with ``[``) holds the JSON message list.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import fsspec

from kitchen.errors import DataError, UsageError
from kitchen.io import append_jsonl, atomic_write_bytes
from kitchen.ports.dataset import Row
from kitchen.telemetry.logging import default_logger

from .rows import FormatArg, RowFormat, RowProblem, resolve_format, validate_row

OnBadRow = Literal["error", "quarantine"]

_SUFFIXES = {
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zstd"}


def _log() -> Any:
    """Resolved per call, so an application's later structlog setup is honoured."""
    return default_logger("kitchen.hf.dataset")


class HfDataset:
    """Validated rows of one source: ``len``, indexing and iteration over dict rows."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        *,
        source: str,
        format: RowFormat,
        rejected_count: int = 0,
        rows_read: int | None = None,
        rejected_path: str | None = None,
    ) -> None:
        self._rows = rows
        self.source = source
        self.format: RowFormat = format
        self.rejected_count = rejected_count
        self.rows_read = len(rows) + rejected_count if rows_read is None else rows_read
        self.rejected_path = rejected_path
        self._hf: Any = None

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Row:
        return self._rows[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    @property
    def column_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self._rows:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def to_hf(self) -> Any:
        """The rows as a ``datasets.Dataset`` (built once, on first call)."""
        if self._hf is None:
            from kitchen.optional import require

            datasets = require("datasets", "hf")
            self._hf = datasets.Dataset.from_list(self._rows)
        return self._hf

    def __repr__(self) -> str:
        return (
            f"HfDataset({self.source!r}, format={self.format!r}, rows={len(self)}, "
            f"rejected={self.rejected_count})"
        )


class HfDatasetStore:
    """DatasetStore over local files and fsspec URLs; see the module docstring."""

    def __init__(
        self, quarantine_dir: str | os.PathLike[str] | None = None, on_bad_row: OnBadRow = "error"
    ) -> None:
        if on_bad_row not in ("error", "quarantine"):
            raise UsageError(f"on_bad_row must be 'error' or 'quarantine', got {on_bad_row!r}")
        if on_bad_row == "quarantine" and quarantine_dir is None:
            raise UsageError("on_bad_row='quarantine' needs quarantine_dir for rejected.jsonl")
        self.quarantine_dir = None if quarantine_dir is None else Path(quarantine_dir)
        self.on_bad_row: OnBadRow = on_bad_row

    @property
    def rejected_path(self) -> Path | None:
        return None if self.quarantine_dir is None else self.quarantine_dir / "rejected.jsonl"

    # -- port -----------------------------------------------------------------------------
    def load(
        self, source: str, split: str | None = None, *, format: FormatArg = "auto"
    ) -> HfDataset:
        """Load and validate ``source`` (a file, a directory with split files, or a URL).

        For a directory, ``split`` picks ``<dir>/<split>.{jsonl,json,parquet,csv}`` (or
        ``<split>-*.parquet`` shards, read in name order); a single file is the ``train``
        split, so ``split`` must be ``None`` or ``"train"``.
        """
        source = str(source)
        fs, path = _fs(source)
        if not fs.exists(path):
            raise DataError(
                source,
                None,
                None,
                "no such file or directory. HfDatasetStore reads local files and fsspec URLs "
                "only and never downloads from the Hugging Face Hub; download the dataset "
                "first (e.g. `huggingface-cli download --repo-type dataset ...`) and pass its path",
            )
        if "://" not in source and not (os.path.isdir(path) or os.path.isfile(path)):
            raise DataError(  # a FIFO would block forever, a device never end
                source, None, None, "is not a regular file or directory; give a data file"
            )
        if fs.isdir(path):
            if fs.exists(_join(path, "dataset_info.json")) or fs.exists(
                _join(path, "dataset_dict.json")
            ):
                indexed = _load_from_disk(source, split)
                files = [source]
            else:
                files = _split_files(fs, path, source, split)
                indexed = []
                for f in files:
                    indexed.extend(
                        (f, i, r) for i, r in _read_checked(fs, f, _display(source, fs, f))
                    )
        else:
            if split not in (None, "train"):
                raise UsageError(
                    f"{source} is a single file, which is the 'train' split; "
                    f"split={split!r} needs a directory with {split}.jsonl/.parquet/.csv"
                )
            indexed = [(path, i, r) for i, r in _read_checked(fs, path, source)]
            files = [path]
        return self._validate(source, fs, files, indexed, format)

    def save(self, rows: Iterable[Row], dest: str) -> str:
        """Write rows as JSONL (or Parquet for ``.parquet``) atomically; return ``dest``."""
        dest = str(dest)
        suffix = _data_suffix(dest)
        if suffix in (".parquet", ".pq"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pylist([dict(r) for r in rows]), buf)
            data = buf.getvalue()
        elif suffix in ("", ".jsonl", ".ndjson", ".json"):
            data = "".join(
                json.dumps(dict(r), ensure_ascii=False, default=str) + "\n" for r in rows
            ).encode("utf-8")
        else:
            raise UsageError(f"cannot save {dest}: use a .jsonl or .parquet destination")
        if "://" not in dest:
            atomic_write_bytes(dest, data)
            return dest
        fs, path = _fs(dest)
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with fs.open(tmp, "wb") as fh:
            fh.write(data)
        try:
            fs.mv(tmp, path)  # a rename on stores that have one; never a torn dest
        except Exception:
            fs.rm(tmp)
            raise
        return dest

    def exists(self, source: str) -> bool:
        fs, path = _fs(str(source))
        return bool(fs.exists(path))

    # -- validation -----------------------------------------------------------------------
    def _validate(
        self,
        source: str,
        fs: Any,
        files: list[str],
        indexed: list[tuple[str, int, Any]],
        format: FormatArg,
    ) -> HfDataset:
        columns: dict[str, None] = {}
        for _, _, r in indexed:
            if isinstance(r, Mapping):
                columns.update(dict.fromkeys(r))
        fmt = resolve_format(format, columns, source)
        good: list[dict[str, Any]] = []
        rejected = 0
        for f, i, row in indexed:
            name = _display(source, fs, f)
            problem = row.problem if isinstance(row, _Unreadable) else None
            if problem is None:
                row = _decode_json_cells(row, fmt) if f.endswith(_CSV_ENDINGS) else row
                problem = validate_row(row, fmt)
            if problem is None:
                good.append(dict(row))
                continue
            if self.on_bad_row == "error":
                raise problem.to_error(name, i)
            rejected += 1
            assert self.rejected_path is not None
            self.rejected_path.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(
                self.rejected_path,
                {
                    "source": name,
                    "index": i,
                    "field": problem.field,
                    "reason": problem.message,
                    "row": row.raw if isinstance(row, _Unreadable) else row,
                },
            )
        if rejected and not good:
            raise DataError(
                source,
                None,
                None,
                f"all {rejected} rows were rejected (reasons in {self.rejected_path}); "
                "fix the data, or check that format and the file type are right",
            )
        if rejected:
            _log().warning(
                "dataset rows quarantined",
                source=source,
                rejected=rejected,
                kept=len(good),
                rejected_path=str(self.rejected_path),
            )
        return HfDataset(
            good,
            source=source,
            format=fmt,
            rejected_count=rejected,
            rows_read=len(indexed),
            rejected_path=None if not rejected else str(self.rejected_path),
        )


_CSV_ENDINGS = tuple(f"{s}{c}" for s in (".csv", ".tsv") for c in ("", *_COMPRESSION))


@dataclass(frozen=True)
class _Unreadable:
    """A row that could not even be parsed; ``raw`` is what was read (quarantined as is)."""

    raw: Any
    problem: RowProblem


def _fs(source: str) -> tuple[Any, str]:
    if "://" in source:
        fs, path = fsspec.core.url_to_fs(source)
        return fs, path
    return fsspec.filesystem("file"), os.path.abspath(source)


def _join(path: str, name: str) -> str:
    return path.rstrip("/") + "/" + name


def _display(source: str, fs: Any, path: str) -> str:
    """How a file is named in errors: the source itself, or its protocol-qualified path."""
    if "://" not in source:
        return path if os.path.abspath(source) != path else source
    if source.endswith(path) or source.rstrip("/").endswith(path.rstrip("/")):
        return source
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"{proto}://{path.lstrip('/')}" if proto != "file" else path


def _data_suffix(path: str) -> str:
    p = Path(path.split("?", 1)[0])
    suffixes = [s.lower() for s in p.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _split_files(fs: Any, path: str, source: str, split: str | None) -> list[str]:
    split = split or "train"
    entries = sorted(fs.ls(path, detail=False))
    names = {e.rstrip("/").rsplit("/", 1)[-1]: e for e in entries}
    out = []
    for name, full in sorted(names.items()):
        if _data_suffix(name) not in _SUFFIXES:
            continue
        stem = name.split(".", 1)[0]
        if stem == split or stem.startswith(f"{split}-"):
            out.append(full)
    if not out:
        raise DataError(
            source,
            None,
            None,
            f"no files for split {split!r}; expected {split}.jsonl, {split}.parquet, "
            f"{split}.csv or {split}-*.parquet in the directory (found {sorted(names)})",
        )
    return out


def _read_checked(fs: Any, path: str, name: str) -> Iterator[tuple[int, Any]]:
    """:func:`_read_file`, with a file that cannot be decoded at all (bad UTF-8, a broken
    gzip/Parquet, NUL bytes in CSV) reported as a DataError naming it and the row reached."""
    index = -1
    try:
        for index, row in _read_file(fs, path, name):
            yield index, row
    except DataError:
        raise
    except (UnicodeDecodeError, csv.Error, OSError, EOFError, ValueError, RecursionError) as exc:
        raise _unreadable(name, index + 1, exc) from None
    except Exception as exc:  # pyarrow.ArrowException and the decompressors' own errors
        if type(exc).__module__.split(".")[0] not in ("pyarrow", "zstandard", "lzma", "bz2"):
            raise
        raise _unreadable(name, index + 1, exc) from None


def _unreadable(name: str, row: int, exc: BaseException) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        why = f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8"
    else:
        why = (
            f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        )
        why += "; is the file complete and of the type its name says?"
    return DataError(name, row if row > 0 else None, None, why)


def _read_file(fs: Any, path: str, name: str) -> Iterator[tuple[int, Any]]:
    kind = _SUFFIXES.get(_data_suffix(path))
    if kind is None:
        raise DataError(
            name, None, None, "unknown file type; use .jsonl/.json, .parquet or .csv/.tsv"
        )
    if kind == "parquet":
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh)
        yield from enumerate(table.to_pylist())
        return
    with fs.open(path, "rt", encoding="utf-8", compression="infer", newline="") as fh:
        if kind == "json":
            yield from _read_json(fh, name)
        else:
            reader = csv.DictReader(fh, delimiter="\t" if kind == "tsv" else ",")
            for i, rec in enumerate(reader):
                row = {k: (None if v in ("", None) else v) for k, v in rec.items() if k is not None}
                if None in rec:  # more cells than header columns
                    problem = RowProblem(None, "has more cells than the CSV header has columns")
                    raw = {("_extra" if k is None else k): v for k, v in rec.items()}
                    yield i, _Unreadable(raw, problem)
                    continue
                yield i, row


def _read_json(fh: Any, name: str) -> Iterator[tuple[int, Any]]:
    text = fh.read()
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of rows
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(name, None, None, f"invalid JSON array: {exc}") from None
        yield from enumerate(rows)
        return
    index = 0
    for line in text.splitlines():
        if not line.strip():
            continue  # blank lines are not rows
        try:
            yield index, json.loads(line)
        except json.JSONDecodeError as exc:
            problem = RowProblem(None, f"is not valid JSON ({exc.msg} at column {exc.colno})")
            yield index, _Unreadable(line, problem)
        index += 1


def _decode_json_cells(row: Any, fmt: RowFormat) -> Any:
    """CSV cannot nest: decode the JSON message list a chat/preference cell carries."""
    if not isinstance(row, Mapping):
        return row
    keys = ["messages"] if fmt == "chat" else ["prompt"] if fmt == "preference" else []
    out = dict(row)
    for key in keys:
        value = out.get(key)
        if isinstance(value, str) and (key == "messages" or value.lstrip().startswith("[")):
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                pass  # validation reports the wrong type
    return out


def _load_from_disk(source: str, split: str | None) -> list[tuple[str, int, Any]]:
    from kitchen.optional import require

    datasets = require("datasets", "hf")
    obj = datasets.load_from_disk(source)
    if isinstance(obj, datasets.DatasetDict):
        key = split or "train"
        if key not in obj:
            raise DataError(source, None, None, f"no split {key!r}; it has {sorted(obj)}")
        obj = obj[key]
    elif split not in (None, "train"):
        raise UsageError(f"{source} holds a single dataset; split={split!r} does not exist")
    return [(source, i, r) for i, r in enumerate(obj)]

"""HfDatasetStore: formats, per-row validation errors, quarantine, fsspec URLs, save."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from kitchen.adapters.hf.dataset import HfDataset, HfDatasetStore  # noqa: E402
from kitchen.errors import DataError, UsageError  # noqa: E402
from kitchen.io import read_jsonl  # noqa: E402
from kitchen.ports import Dataset, DatasetStore  # noqa: E402


def chat(user: str = "hi", reply: str = "hello") -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": reply},
        ]
    }


GOOD = [chat("a", "b"), chat("c", "d"), chat("e", "f"), chat("g", "h")]
BAD_INDEX = 2

# case -> (bad row for JSONL/CSV/Parquet, expected field)
CASES: dict[str, tuple[Any, str]] = {
    "missing": ({"id": 9}, "messages"),
    "wrong_type": ({"messages": "hello there"}, "messages"),
    "empty": ({"messages": []}, "messages"),
    "bad_role": (
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "robot", "content": "y"},
            ]
        },
        "messages[1].role",
    ),
}


def _rows(case: str) -> list[dict[str, Any]]:
    rows = [dict(r, id=i) for i, r in enumerate(GOOD)]
    rows[BAD_INDEX] = {"id": BAD_INDEX, **CASES[case][0]}
    return rows


def _write(kind: str, case: str, tmp: Path) -> tuple[Path, int]:
    """Write the case in ``kind``; returns the path and the row the error must name."""
    rows = _rows(case)
    if kind == "jsonl":
        p = tmp / "data.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return p, BAD_INDEX
    if kind == "csv":
        p = tmp / "data.csv"
        with open(p, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "messages"])
            for r in rows:
                m = r.get("messages")
                cell = "" if m is None else m if isinstance(m, str) else json.dumps(m)
                w.writerow([r["id"], cell])
        return p, BAD_INDEX
    p = tmp / "data.parquet"
    if case == "wrong_type":
        # A Parquet column has one type: make the whole column the wrong type.
        table = pa.table({"id": [0, 1], "messages": ["hello", "there"]})
        pq.write_table(table, p)
        return p, 0
    norm = [{"id": r["id"], "messages": r.get("messages")} for r in rows]
    pq.write_table(pa.Table.from_pylist(norm), p)
    return p, BAD_INDEX


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_bad_row_error_names_file_row_field(kind: str, case: str, tmp_path: Path) -> None:
    path, bad_row = _write(kind, case, tmp_path)
    with pytest.raises(DataError) as info:
        HfDatasetStore().load(str(path))
    err = info.value
    assert err.source == str(path)
    assert err.row == bad_row
    assert err.field == CASES[case][1]
    assert str(path) in str(err) and f"row {bad_row}" in str(err)


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_good_files_load_identically(kind: str, tmp_path: Path) -> None:
    rows = [dict(r, id=i) for i, r in enumerate(GOOD)]
    store = HfDatasetStore()
    if kind == "jsonl":
        src = store.save(rows, str(tmp_path / "d.jsonl"))
    elif kind == "parquet":
        src = store.save(rows, str(tmp_path / "d.parquet"))
    else:
        src = str(tmp_path / "d.csv")
        with open(src, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "messages"])
            for r in rows:
                w.writerow([r["id"], json.dumps(r["messages"])])
    ds = store.load(src)
    assert isinstance(ds, Dataset) and isinstance(store, DatasetStore)
    assert ds.format == "chat" and len(ds) == 4 and ds.rejected_count == 0
    assert [r["messages"] for r in ds] == [r["messages"] for r in rows]
    assert [str(r["id"]) for r in ds] == ["0", "1", "2", "3"]  # CSV cells are strings
    hf = ds.to_hf()
    assert hf.num_rows == 4


def test_quarantine_counts_add_up(tmp_path: Path) -> None:
    p = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps({"prompt": "2+2=", "completion": "4"}),
        json.dumps({"prompt": "3+3="}),  # missing completion
        json.dumps({"prompt": "1+1=", "completion": 2}),  # wrong type
        "{not json",
        json.dumps({"prompt": "   ", "completion": "x"}),  # blank
        json.dumps({"prompt": "5+5=", "completion": "10"}),
    ]
    p.write_text("\n".join(lines) + "\n")
    q = tmp_path / "q"
    store = HfDatasetStore(quarantine_dir=str(q), on_bad_row="quarantine")
    ds = store.load(str(p))
    assert ds.format == "prompt_completion"
    assert len(ds) == 2 and ds.rejected_count == 4 and ds.rows_read == 6
    assert len(ds) + ds.rejected_count == ds.rows_read
    rejected = read_jsonl(q / "rejected.jsonl")
    assert [r["index"] for r in rejected] == [1, 2, 3, 4]
    assert [r["field"] for r in rejected] == ["completion", "completion", None, "prompt"]
    assert all(r["source"] == str(p) and r["reason"] for r in rejected)
    assert rejected[2]["row"] == "{not json" and "not valid JSON" in rejected[2]["reason"]
    assert rejected[0]["row"] == {"prompt": "3+3="}
    assert ds.rejected_path == str(q / "rejected.jsonl")


def test_quarantine_needs_a_dir() -> None:
    with pytest.raises(UsageError, match="quarantine_dir"):
        HfDatasetStore(on_bad_row="quarantine")


@pytest.mark.parametrize(
    ("rows", "fmt", "field"),
    [
        ([{"text": "ok"}, {"text": 3}], "text", "text"),
        ([{"text": "ok"}, {"text": ""}], "text", "text"),
        (
            [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}],
            "preference",
            "rejected",
        ),
        (
            [
                {"prompt": "p", "chosen": "a", "rejected": "b"},
                {"prompt": "p", "chosen": "a", "rejected": "a"},
            ],
            "preference",
            "rejected",
        ),
        (
            [chat(), {"messages": [{"role": "user", "content": "only a question"}]}],
            "chat",
            "messages",
        ),
        (
            [
                chat(),
                {
                    "messages": [
                        {"role": "user", "content": 5},
                        {"role": "assistant", "content": "x"},
                    ]
                },
            ],
            "chat",
            "messages[0].content",
        ),
    ],
)
def test_format_detection_and_errors(
    rows: list[dict[str, Any]], fmt: str, field: str, tmp_path: Path
) -> None:
    store = HfDatasetStore()
    src = store.save(rows, str(tmp_path / "d.jsonl"))
    with pytest.raises(DataError) as info:
        store.load(src)
    assert (info.value.row, info.value.field) == (1, field)
    good = store.save(rows[:1], str(tmp_path / "good.jsonl"))
    assert store.load(good).format == fmt


def test_explicit_format_and_undetectable(tmp_path: Path) -> None:
    store = HfDatasetStore()
    src = store.save([{"text": "t", "prompt": "p", "completion": "c"}], str(tmp_path / "x.jsonl"))
    assert store.load(src).format == "prompt_completion"
    assert store.load(src, format="text").format == "text"
    other = store.save([{"question": "q"}], str(tmp_path / "y.jsonl"))
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        store.load(other)


def test_memory_url_roundtrip_and_splits() -> None:
    store = HfDatasetStore()
    assert not store.exists("memory://kitchen-test/ds/train.jsonl")
    store.save([{"text": "one"}, {"text": "two"}], "memory://kitchen-test/ds/train.jsonl")
    store.save([{"text": "three"}], "memory://kitchen-test/ds/valid.jsonl")
    assert store.exists("memory://kitchen-test/ds/train.jsonl")
    ds = store.load("memory://kitchen-test/ds/train.jsonl")
    assert [r["text"] for r in ds] == ["one", "two"]
    assert [r["text"] for r in store.load("memory://kitchen-test/ds", split="valid")] == ["three"]
    assert len(store.load("memory://kitchen-test/ds")) == 2  # default split: train
    with pytest.raises(DataError, match="no files for split 'test'"):
        store.load("memory://kitchen-test/ds", split="test")
    store.save([{"text": "bad"}, {"text": ""}], "memory://kitchen-test/bad.jsonl")
    with pytest.raises(DataError, match=r"memory://kitchen-test/bad.jsonl row 1 field 'text'"):
        store.load("memory://kitchen-test/bad.jsonl")


def test_missing_source_never_touches_the_hub(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="never downloads from the Hugging Face Hub"):
        HfDatasetStore().load("some-org/some-dataset")
    with pytest.raises(UsageError, match="single file"):
        src = HfDatasetStore().save([{"text": "a"}], str(tmp_path / "a.jsonl"))
        HfDatasetStore().load(src, split="valid")


def test_save_is_atomic_and_jsonl(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "out.jsonl"
    out = HfDatasetStore().save(iter([{"text": "é"}, {"text": "b"}]), str(dest))
    assert out == str(dest)
    assert read_jsonl(dest) == [{"text": "é"}, {"text": "b"}]
    assert [p.name for p in dest.parent.iterdir()] == ["out.jsonl"]  # no temp files left


def test_gzip_jsonl_and_save_to_disk_dirs(tmp_path: Path) -> None:
    import gzip

    datasets = pytest.importorskip("datasets")
    p = tmp_path / "d.jsonl.gz"
    with gzip.open(p, "wt") as fh:
        fh.write(json.dumps({"text": "zipped"}) + "\n")
    assert [r["text"] for r in HfDatasetStore().load(str(p))] == ["zipped"]
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"text": "a"}]),
            "test": datasets.Dataset.from_list([{"text": ""}]),
        }
    )
    dd.save_to_disk(str(tmp_path / "arrow"))
    ds = HfDatasetStore().load(str(tmp_path / "arrow"))
    assert isinstance(ds, HfDataset) and [r["text"] for r in ds] == ["a"]
    with pytest.raises(DataError, match="row 0 field 'text'"):
        HfDatasetStore().load(str(tmp_path / "arrow"), split="test")


def test_quarantine_logs_a_warning_with_the_count(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    store = HfDatasetStore(quarantine_dir=str(tmp_path / "q"), on_bad_row="quarantine")
    src = store.save([{"text": "ok"}, {"text": ""}, {"text": None}], str(tmp_path / "d.jsonl"))
    with capture_logs() as logs:
        ds = store.load(src)
    assert ds.rejected_count == 2
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and warnings[0]["rejected"] == 2 and warnings[0]["kept"] == 1

"""Bad dataset files: exit 2 with one line naming the file and row (and field), on noop
through the CLI and on the hf store directly; nothing is written to the data file."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitchen.errors import DataError
from tests.reliability.cli import assert_clean_failure, invoke, snapshot

FAST = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
GOOD = {
    "messages": [
        {"role": "user", "content": "What is 1+1?"},
        {"role": "assistant", "content": "2"},
    ]
}
WRONG = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def bad_chat_row(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A chat row with one thing wrong, and the field the error must name."""
    row = copy.deepcopy(GOOD)
    kind = draw(st.sampled_from(["messages", "message", "role", "content", "unknown_role"]))
    i = draw(st.integers(0, 1))
    if kind == "messages":
        row["messages"] = draw(WRONG.filter(lambda v: v is not None and not isinstance(v, list)))
        return row, "messages"
    if kind == "message":
        row["messages"][i] = draw(WRONG.filter(lambda v: not isinstance(v, dict)))
        return row, f"messages[{i}]"
    if kind == "role":
        row["messages"][i]["role"] = draw(WRONG.filter(lambda v: v is not None))
        return row, f"messages[{i}].role"
    if kind == "unknown_role":
        row["messages"][i]["role"] = draw(
            st.sampled_from(["tool", "System", "bot", "", "assistant "])
        )
        return row, f"messages[{i}].role"
    row["messages"][i]["content"] = draw(WRONG.filter(lambda v: v is not None))
    return row, f"messages[{i}].content"


def test_bad_chat_rows_on_noop_name_file_row_and_field(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    @FAST
    @given(bad=bad_chat_row(), position=st.integers(0, 5))
    def check(bad: tuple[dict[str, Any], str], position: int) -> None:
        row, field = bad
        tmp = tmp_path_factory.mktemp("ds")
        data = tmp / "train.jsonl"
        rows = [GOOD] * 6
        rows = [*rows[:position], row, *rows[position:]]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        before = snapshot(data)
        result = invoke(
            ["run", "sft", "--run-dir", str(tmp / "run"), "--no-progress",
             "--set", f"dataset={data}", "--set", "eval_fraction=0"]
        )  # fmt: skip
        assert_clean_failure(result, str(data), f"row {position}", f"'{field}'")
        assert snapshot(data) == before

    check()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', "not UTF-8"),
        (b'{"text": "a"}\n\x00\x00\x00\n', "NUL"),
        (b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", "row 0"),
        (b"not json at all\n", "not valid JSON"),
        (b"[1, 2, 3]\n", "JSON object"),
    ],
)
def test_undecodable_noop_jsonl(tmp_path: Path, content: bytes, needle: str) -> None:
    data = tmp_path / "train.jsonl"
    data.write_bytes(content)
    result = invoke(
        ["run", "sft", "--run-dir", str(tmp_path / "run"), "--no-progress",
         "--set", f"dataset={data}"]
    )  # fmt: skip
    assert_clean_failure(result, str(data), needle)


def test_rows_longer_than_max_length_are_said_and_refused_by_config(tmp_path: Path) -> None:
    long = {"messages": [GOOD["messages"][0], {"role": "assistant", "content": "x " * 400}]}
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [GOOD, long, GOOD, GOOD]))
    base = ["run", "sft", "--no-progress", "--set", f"dataset={data}", "--set", "max_length=64"]
    base += ["--set", "eval_fraction=0", "--set", "epochs=1"]
    refused = invoke([*base, "--run-dir", str(tmp_path / "a"), "--set", "on_long_row=error"])
    assert_clean_failure(refused, str(data), "row 1", "max_length=64", "on_long_row")
    said = invoke([*base, "--run-dir", str(tmp_path / "b")])
    assert said.code == 0, said.err
    assert "rows truncated to max_length" in said.err and "rows=1" in said.err


# -- the hf store: garbage files of every type it reads -------------------------------
hf_dataset = pytest.importorskip("kitchen.adapters.hf.dataset")
pytest.importorskip("pyarrow")

GARBAGE = st.binary(min_size=1, max_size=200)


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".parquet", ".csv.gz", ".csv", ".jsonl", ".tsv"])
def test_garbage_files_are_data_errors_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory, suffix: str
) -> None:
    @settings(max_examples=15, deadline=None)
    @given(raw=GARBAGE)
    def check(raw: bytes) -> None:
        f = tmp_path_factory.mktemp("g") / f"train{suffix}"
        f.write_bytes(raw)
        store = hf_dataset.HfDatasetStore()
        try:
            ds = store.load(str(f))
        except DataError as exc:
            assert str(f) in str(exc) and "\n" not in str(exc)
        else:
            assert len(ds) >= 1  # garbage that happens to parse (e.g. a one-column CSV)

    check()


@pytest.mark.parametrize(
    ("name", "raw", "needle"),
    [
        ("t.jsonl.gz", gzip.compress(b'{"text": "ok"}\n')[:-6], "cannot be read"),
        ("t.jsonl.gz", b"\x1f\x8b\x08\x00garbage", "cannot be read"),
        ("t.parquet", b"PAR1" + b"\x00" * 20 + b"PAR1", "cannot be read"),
        ("t.csv", b"text\nab\x00cd\n", "t.csv"),
        ("t.jsonl", b'{"text": "caf\xe9"}\n', "not UTF-8"),
    ],
)
def test_specific_broken_files(tmp_path: Path, name: str, raw: bytes, needle: str) -> None:
    f = tmp_path / name
    f.write_bytes(raw)
    with pytest.raises(DataError) as info:
        hf_dataset.HfDatasetStore().load(str(f))
    assert needle in str(info.value) and str(f) in str(info.value)


def test_quarantine_that_leaves_no_rows_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text('{"messages": 3}\n{"messages": [{"role": "bot", "content": "x"}]}\n')
    store = hf_dataset.HfDatasetStore(quarantine_dir=tmp_path / "q", on_bad_row="quarantine")
    with pytest.raises(DataError, match="all 2 rows were rejected"):
        store.load(str(f))
    assert len((tmp_path / "q" / "rejected.jsonl").read_text().splitlines()) == 2


def test_a_fifo_or_device_as_data_file_does_not_block(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "train.jsonl"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")
    for f in (fifo, zero):
        with pytest.raises(DataError, match="not a regular file"):
            hf_dataset.HfDatasetStore().load(str(f))


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["messages", "role", "content", "text", "prompt", "completion", "x"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)


def test_any_json_rows_train_or_fail_cleanly(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Rows of any JSON shape: the run trains, or exits 2 naming the file; never exit 1."""

    @settings(max_examples=30, deadline=None)
    @given(rows=st.lists(ANY_JSON, min_size=1, max_size=4))
    def check(rows: list[Any]) -> None:
        tmp = tmp_path_factory.mktemp("any")
        data = tmp / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in [*rows, GOOD]))
        result = invoke(
            ["run", "sft", "--run-dir", str(tmp / "run"), "--no-progress",
             "--set", f"dataset={data}", "--set", "eval_fraction=0", "--set", "max_steps=1"]
        )  # fmt: skip
        if result.code != 0:
            assert_clean_failure(result, str(data))

    check()

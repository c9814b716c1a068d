"""Bad config files and `--set` values: exit 2, one line naming the file or field, no
traceback, no run directory written. Property tests generate members of each family."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.cli import assert_clean_failure, invoke

FAST = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
COUNTS = ["epochs", "batch_size", "max_length", "checkpoint_every", "eval_every", "warmup_steps"]
RATES = ["learning_rate", "weight_decay", "grad_clip_norm", "eps"]


def _run(tmp_path: Path, config: Path, *extra: str) -> tuple[object, Path]:
    run_dir = tmp_path / "run"
    result = invoke(["run", str(config), "--run-dir", str(run_dir), "--no-progress", *extra])
    return result, run_dir


def _write(tmp_path: Path, text: str | bytes, name: str = "run.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def _alias_bomb(levels: int, width: int) -> str:
    lines = ["recipe: sft", 'a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


BAD_DOCUMENTS = st.one_of(
    # alias bombs ("billion laughs") of various shapes
    st.builds(_alias_bomb, st.integers(7, 12), st.integers(8, 12)).map(lambda t: (t, "alias")),
    # deep nesting, as flow or block style
    st.integers(40, 400).map(lambda n: ("recipe: sft\nx: " + "[" * n + "]" * n + "\n", "nests")),
    st.integers(40, 100).map(
        lambda n: ("recipe: sft\n" + "".join("  " * i + f"k{i}:\n" for i in range(n)), "nests")
    ),
    # duplicate keys, anywhere
    st.sampled_from(COUNTS).map(
        lambda k: (f"recipe: sft\nconfig:\n  {k}: 1\n  {k}: 2\n", "duplicate key")
    ),
    st.just(("recipe: sft\nrecipe: dpo\n", "duplicate key")),
    # booleans where counts go
    st.tuples(st.sampled_from(COUNTS), st.sampled_from(["yes", "no", "on", "true", "off"])).map(
        lambda kv: (f"recipe: sft\nconfig:\n  {kv[0]}: {kv[1]}\n", kv[0])
    ),
    # non-finite or absurd rates
    st.tuples(st.sampled_from(RATES), st.sampled_from([".inf", "-.inf", ".nan", "1.0e308"])).map(
        lambda kv: (f"recipe: sft\nconfig:\n  {kv[0]}: {kv[1]}\n", kv[0])
    ),
    # absurd sizes and wrong types inside the nested model config
    st.sampled_from(["100000000000", "-5", "1.5", "[1]", "{a: 1}", "true", "big"]).map(
        lambda v: (f"recipe: sft\nconfig:\n  model:\n    vocab_size: {v}\n", "model.vocab_size")
    ),
    st.sampled_from(["seed: 99999999999999999999", "seed: -1", "seed: x"]).map(
        lambda line: (f"recipe: sft\nconfig:\n  {line}\n", "seed")
    ),
    # wrong top-level shapes
    st.sampled_from(
        ["- 1\n- 2\n", "just a string\n", "recipe: [sft]\n", "recipe: sft\nconfig: 3\n"]
    ).map(lambda t: (t, "run.yaml")),
    # python tags never run code
    st.just(("recipe: sft\nx: !!python/object/apply:os.system ['echo hi']\n", "run.yaml")),
)


def test_bad_config_documents(tmp_path_factory: pytest.TempPathFactory) -> None:
    @FAST
    @given(doc=BAD_DOCUMENTS)
    def check(doc: tuple[str, str]) -> None:
        text, needle = doc
        tmp = tmp_path_factory.mktemp("cfg")
        result, run_dir = _run(tmp, _write(tmp, text))
        assert_clean_failure(result, needle)  # type: ignore[arg-type]
        assert not run_dir.exists()

    check()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("recipe: sft\n".encode("utf-16"), "UTF-16"),
        ("recipe: sft\n".encode("utf-16-be"), "run.yaml"),
        (b"recipe: sft\nname: caf\xe9\n", "not UTF-8"),
        (b"recipe: sft\x00\n", "run.yaml"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "run.yaml"),
    ],
)
def test_config_encodings(tmp_path: Path, data: bytes, needle: str) -> None:
    result, run_dir = _run(tmp_path, _write(tmp_path, data))
    assert_clean_failure(result, needle)
    assert not run_dir.exists()


def test_config_that_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would block forever
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")  # reading it would never end
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    for path, needle in [
        (fifo, "not a regular file"),
        (zero, "not a regular file"),
        (folder, "is a directory"),
        (tmp_path / "missing.yaml", "does not exist"),
    ]:
        result, run_dir = _run(tmp_path, path)
        assert_clean_failure(result, str(path), needle)
        assert not run_dir.exists()


def test_huge_config_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: costs no disk
    result, _ = _run(tmp_path, big)
    assert_clean_failure(result, "big.yaml", "over the limit")


BAD_SETS = st.one_of(
    st.sampled_from(
        ["epochs", "=3", "a..b=1", ".x=1", "epochs=[1", "epochs={", "x=!!python/name:os.system"]
    ),
    st.tuples(
        st.sampled_from(COUNTS), st.sampled_from(["yes", "off", "1e11", "-3", "[]", "x"])
    ).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.tuples(st.sampled_from(RATES), st.sampled_from([".inf", ".nan", "-1", "1e400", "[1]"])).map(
        lambda kv: f"{kv[0]}={kv[1]}"
    ),
    st.sampled_from(
        [
            "model.vocab_size=1e11",
            "model.vocab_size=100000000000",
            "model.vocab_size=-512",
            "seed=99999999999999999999999",
            "model.name=[1, 2]",
            "nosuchfield=1",
            "epochs.sub=1",
            "x=" + "[" * 100 + "]" * 100,
            "x=*a",
        ]
    ),
)


def test_bad_set_values(tmp_path_factory: pytest.TempPathFactory) -> None:
    @FAST
    @given(expr=BAD_SETS)
    def check(expr: str) -> None:
        run_dir = tmp_path_factory.mktemp("set") / "run"
        result = invoke(["run", "sft", "--run-dir", str(run_dir), "--no-progress", "--set", expr])
        assert_clean_failure(result)
        assert not run_dir.exists()

    check()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """The one-line contract is for users; --debug still raises for developers."""
    from kitchen.errors import ConfigError

    with pytest.raises(ConfigError):
        invoke(["--debug", "run", "sft", "--run-dir", str(tmp_path / "r"), "--set", "epochs=yes"])


HF_BAD = st.one_of(
    st.tuples(
        st.sampled_from(
            ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "max_position_embeddings", "intermediate_size"]
        ),
        st.sampled_from(["100000000000", "-8", "0", "1.5", "big", "[64]", "yes"]),
    ).map(lambda kv: (f"model.config.{kv[0]}={kv[1]}", "model.config")),
    st.sampled_from(["x", "[1]", "{a: 1}", "-1", "yes", "1e99"]).map(
        lambda v: (f"model.lora.rank={v}", "model.lora.rank")
    ),
    st.sampled_from(["model.mode=turbo", "model.config=3", "model.lora=[]", "model.seed=-1"]).map(
        lambda e: (e, e.split("=")[0])
    ),
)  # fmt: skip


def test_bad_nested_hf_model_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("transformers")

    @settings(max_examples=12, deadline=None)
    @given(bad=HF_BAD)
    def check(bad: tuple[str, str]) -> None:
        expr, field = bad
        run_dir = tmp_path_factory.mktemp("hf") / "run"
        result = invoke(
            ["run", "sft", "--adapters", "hf", "--run-dir", str(run_dir), "--no-progress",
             "--set", expr]
        )  # fmt: skip
        assert_clean_failure(result, field)
        assert not run_dir.exists()  # refused before anything is written

    check()


FIELDS = sorted(
    __import__("kitchen.workflows.supervised.config", fromlist=["x"]).SupervisedConfig.model_fields
)
TRICKY = st.sampled_from(
    ["", "~", "null", "0", "-1", "1e400", ".inf", "-.nan", "yes", "0x10", "0o7", "1_000",
     "2001-12-14", "[]", "{}", "[[[]]]", "'x'", '"\\x00"', "!!binary aGk=", "&a [*a]",
     "9" * 40, "-" * 3, "a: b", "? x", "%TAG", "*undefined", "\t", "ünïcödé"]
)  # fmt: skip


def test_any_value_for_any_field_is_accepted_or_refused_cleanly(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Never exit 1 or a traceback, whatever a user types for whichever field."""

    @settings(max_examples=40, deadline=None)
    @given(field=st.sampled_from(FIELDS), value=TRICKY)
    def check(field: str, value: str) -> None:
        run_dir = tmp_path_factory.mktemp("any") / "run"
        argv = [
            "run",
            "sft",
            "--run-dir",
            str(run_dir),
            "--no-progress",
            "--set",
            f"{field}={value}",
        ]
        if field not in ("epochs", "max_steps"):
            argv += ["--set", "max_steps=1"]
        result = invoke(argv)
        if result.code != 0:
            assert_clean_failure(result)

    check()


def test_end_to_end_alias_bomb_and_fifo_in_a_real_process(tmp_path: Path) -> None:
    """The real `kitchen` process: an alias bomb and a FIFO config fail fast, in one line."""
    import subprocess
    import sys

    bomb = _write(tmp_path, _alias_bomb(12, 12), "bomb.yaml")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for config in (bomb, fifo):
        out = subprocess.run(
            [sys.executable, "-m", "kitchen", "run", str(config), "--run-dir",
             str(tmp_path / "run"), "--no-progress"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert str(config) in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()

"""Pins ``kitchen.testing``, the contract-test mixins adapter packages subclass in their own
tests. A failure here is a breaking change for those packages: bump the major version and
write a migration note, or restore the name."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import kitchen.testing
from kitchen.testing import datums

MIXINS = {
    "BlobStoreContract": "blob",
    "DatasetStoreContract": "dataset",
    "HubClientContract": "hub",
    "MetricsStoreContract": "metrics",
    "SamplingClientContract": "sampling",
    "TokenizerClientContract": "tokenizer",
    "TrainingClientContract": "training",
}

# What a concrete suite may override: fixtures (abstract ones first) and class attributes.
# Renaming or removing one breaks every subclass that overrides it.
OVERRIDABLE = {
    "TrainingClientContract": {
        "client",
        "vocab_size",
        "adam_params",
        "train_steps",
        "seq_len",
        "batch_size",
        "batch",
        "logprob_atol",
        "loss_rtol",
        "loss_atol",
        "restore_atol",
        "result_timeout",
    },
    "SamplingClientContract": {
        "sampling_client",
        "vocab_size",
        "prompt_tokens",
        "logprob_atol",
        "result_timeout",
    },
    "DatasetStoreContract": {"dataset_store", "dataset_dest", "missing_source", "rows"},
    "BlobStoreContract": {"blob_store"},
    "HubClientContract": {"hub", "repo_id"},
    "MetricsStoreContract": {"metrics_store"},
    "TokenizerClientContract": {"tokenizer", "roundtrip_alphabet"},
}


def sig(obj: object) -> str:
    return str(inspect.signature(obj))  # type: ignore[arg-type]


def test_testing_exports() -> None:
    assert kitchen.testing.__all__ == sorted(MIXINS)
    for name, port in MIXINS.items():
        cls = getattr(kitchen.testing, name)
        assert inspect.isclass(cls), name
        assert cls.__module__ == f"kitchen.testing.contracts.{port}", name


def test_mixin_overridable_names() -> None:
    for name, names in OVERRIDABLE.items():
        cls = getattr(kitchen.testing, name)
        public = {n for n in vars(cls) if not n.startswith(("_", "test_"))}
        assert names <= public, (name, names - public)
        assert any(n.startswith("test_") for n in vars(cls)), name


def test_datums_signatures() -> None:
    assert datums.__all__ == ["PPO_CONFIG", "ce_datum", "make_sequences", "rl_datum"]
    assert datums.PPO_CONFIG == {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}
    assert sig(datums.make_sequences) == (
        "(vocab_size: 'int', n: 'int', length: 'int', seed: 'int' = 0) -> 'list[list[int]]'"
    )
    assert sig(datums.ce_datum) == (
        "(seq: 'Sequence[int]', weights: 'Sequence[float] | None' = None) -> 'Datum'"
    )
    assert sig(datums.rl_datum) == (
        "(seq: 'Sequence[int]', sampler_logp: 'Sequence[float]', adv: 'Sequence[float]') -> 'Datum'"
    )


def test_import_kitchen_does_not_import_the_test_stack() -> None:
    code = (
        "import sys, kitchen\n"
        "for name in kitchen.__all__:\n"
        "    getattr(kitchen, name)\n"
        "loaded = {'kitchen.testing', 'pytest', 'hypothesis'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# A downstream adapter package, laid out as its authors would: its own `memkit` package and
# its own `tests` package (which must not clash with anything of kitchen's).
_ADAPTERS = """
import hashlib

from kitchen.ports import BlobInfo


class DictBlobStore:
    def __init__(self):
        self._data = {}

    def _check(self, key):
        parts = key.split("/")
        if not key or key.startswith("/") or ".." in parts or "" in parts:
            raise ValueError(f"bad blob key {key!r}")
        return key

    def put(self, key, data):
        self._data[self._check(key)] = bytes(data)
        return self.info(key)

    def get(self, key):
        return self._data[self._check(key)]

    def exists(self, key):
        return self._check(key) in self._data

    def delete(self, key):
        del self._data[self._check(key)]

    def list(self, prefix=""):
        return sorted(k for k in self._data if k.startswith(prefix))

    def info(self, key):
        data = self.get(key)
        return BlobInfo(key, len(data), "sha256:" + hashlib.sha256(data).hexdigest())


class ListMetricsStore:
    def __init__(self):
        self._rows = []

    def log(self, metrics, step):
        self._rows.append({"step": step, **metrics})

    def log_params(self, params):
        pass

    def history(self):
        return [dict(r) for r in self._rows]

    def flush(self):
        pass

    def close(self):
        pass
"""

_TESTS = '''
from pathlib import Path

import pytest

import tests
from kitchen.testing import BlobStoreContract, MetricsStoreContract
from memkit import DictBlobStore, ListMetricsStore

# This project's own `tests` package, not kitchen's.
assert Path(tests.__file__).parent == Path(__file__).parent


class TestDictBlobStore(BlobStoreContract):
    @pytest.fixture
    def blob_store(self, tmp_path):
        return DictBlobStore()


class TestDictBlobStoreAgain(BlobStoreContract):
    """A second suite on one mixin in the same session (Hypothesis must accept it)."""

    @pytest.fixture
    def blob_store(self, tmp_path):
        return DictBlobStore()


class TestListMetricsStore(MetricsStoreContract):
    @pytest.fixture
    def metrics_store(self, tmp_path):
        return ListMetricsStore()
'''


def test_a_downstream_package_runs_the_shipped_contracts(tmp_path: Path) -> None:
    project = tmp_path / "memkit-project"
    (project / "memkit").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "memkit"\nversion = "0.1"\n\n'
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
    )
    (project / "memkit" / "__init__.py").write_text(textwrap.dedent(_ADAPTERS))
    (project / "tests" / "__init__.py").write_text("")
    (project / "tests" / "test_contracts.py").write_text(textwrap.dedent(_TESTS))
    # Only the downstream project and the installed kitchen are importable: not this
    # repository's `tests`.
    env = {**os.environ, "PYTHONPATH": str(project)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    # Blob: 6 tests, the bad-key one parametrised 4 ways = 10 per suite, two suites; metrics: 4.
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"24 passed in [\d.]+s", summary), proc.stdout[-3000:]

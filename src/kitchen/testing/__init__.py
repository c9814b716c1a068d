"""Abstract contract-test mixins, one module per port (in the style of fsspec's test mixins).

An adapter package, in kitchen or outside it, proves that its adapter behaves like the others
by subclassing a mixin in its own test suite and supplying the mixin's abstract fixtures::

    import pytest

    from kitchen.testing import TrainingClientContract

    class TestMyTraining(TrainingClientContract):
        @pytest.fixture
        def client(self, tmp_path):
            return MyTrainingClient(...)

        @pytest.fixture
        def vocab_size(self):
            return 512

pytest then collects the inherited tests. The mixins assume only the port protocols in
:mod:`kitchen.ports` and their documented semantics, never one adapter's internals. Every
fixture a mixin uses is either defined on the mixin or built into pytest (``tmp_path``);
nothing comes from a ``conftest.py``. Optional fixtures (tolerances, learning rate, ...)
have defaults that a subclass may override for a slower or less exact backend.

This package imports pytest and hypothesis (``pip install 'kitchen[testing]'``); only test
code imports it, and ``import kitchen`` never does. The datum builders the training
contract uses are in :mod:`kitchen.testing.datums`.
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"kitchen.testing needs {exc.name or 'pytest and hypothesis'}; "
        "install it with: pip install 'kitchen[testing]'"
    ) from exc

from kitchen.testing.contracts.blob import BlobStoreContract
from kitchen.testing.contracts.dataset import DatasetStoreContract
from kitchen.testing.contracts.hub import HubClientContract
from kitchen.testing.contracts.metrics import MetricsStoreContract
from kitchen.testing.contracts.sampling import SamplingClientContract
from kitchen.testing.contracts.tokenizer import TokenizerClientContract
from kitchen.testing.contracts.training import TrainingClientContract

__all__ = [
    "BlobStoreContract",
    "DatasetStoreContract",
    "HubClientContract",
    "MetricsStoreContract",
    "SamplingClientContract",
    "TokenizerClientContract",
    "TrainingClientContract",
]

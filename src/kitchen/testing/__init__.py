"""Abstract contract-test mixins, one module per port (in the style of fsspec's test mixins).

A concrete suite subclasses a mixin and supplies its abstract fixtures::

    from tests.contracts.training import TrainingClientContract

    class TestMyTraining(TrainingClientContract):
        @pytest.fixture
        def client(self, tmp_path):
            return MyTrainingClient(...)

        @pytest.fixture
        def vocab_size(self):
            return 512

The mixins assume only the port protocols in :mod:`kitchen.ports` and their documented
semantics, never one adapter's internals. Optional fixtures (tolerances, learning rate, ...)
have defaults that a subclass may override for a slower or less exact backend.
"""

from tests.contracts.blob import BlobStoreContract
from tests.contracts.dataset import DatasetStoreContract
from tests.contracts.hub import HubClientContract
from tests.contracts.metrics import MetricsStoreContract
from tests.contracts.sampling import SamplingClientContract
from tests.contracts.tokenizer import TokenizerClientContract
from tests.contracts.training import TrainingClientContract

__all__ = [
    "BlobStoreContract",
    "DatasetStoreContract",
    "HubClientContract",
    "MetricsStoreContract",
    "SamplingClientContract",
    "TokenizerClientContract",
    "TrainingClientContract",
]

"""Noop adapters: in-memory, deterministic, pure Python (no torch, no numpy).

The training and sampling clients share a real tiny model (a hashed-bigram log-linear LM,
see :mod:`kitchen.adapters.noop._model`), so losses depend on the data and fall with
training; every other adapter keeps its state in memory per instance. Each adapter records
its calls in ``self.calls`` as ``(method, key args)`` tuples.
"""

from kitchen.adapters.noop._model import Weights
from kitchen.adapters.noop.blob import NoopBlobStore
from kitchen.adapters.noop.dataset import SFT_TINY, NoopDatasetStore, sft_tiny_rows
from kitchen.adapters.noop.hub import NoopHubClient
from kitchen.adapters.noop.metrics import NoopMetricsStore
from kitchen.adapters.noop.sampling import NoopSamplingClient
from kitchen.adapters.noop.tokenizer import NoopTokenizer
from kitchen.adapters.noop.training import NoopTrainingClient

__all__ = [
    "SFT_TINY",
    "NoopBlobStore",
    "NoopDatasetStore",
    "NoopHubClient",
    "NoopMetricsStore",
    "NoopSamplingClient",
    "NoopTokenizer",
    "NoopTrainingClient",
    "Weights",
    "sft_tiny_rows",
]

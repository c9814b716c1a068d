"""Ports: the abstract interfaces workflows talk to. Adapters implement them."""

from kitchen.ports.blob import BlobInfo, BlobStore
from kitchen.ports.dataset import Dataset, DatasetStore, ListDataset, Row
from kitchen.ports.futures import Future, KFuture, SerialWorker, failed, resolved
from kitchen.ports.hub import HubClient
from kitchen.ports.metrics import MetricsStore
from kitchen.ports.sampling import SamplingClient
from kitchen.ports.tokenizer import Message, RenderedChat, TokenizerClient, TrainOn
from kitchen.ports.training import TrainingClient
from kitchen.ports.types import (
    LOSS_FNS,
    AdamParams,
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    GetInfoResponse,
    LoadWeightsResponse,
    LossFnType,
    ModelData,
    ModelInput,
    OptimStepResponse,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
    StopReason,
    TensorData,
)

__all__ = [
    "LOSS_FNS",
    "AdamParams",
    "BlobInfo",
    "BlobStore",
    "Dataset",
    "DatasetStore",
    "Datum",
    "EncodedTextChunk",
    "ForwardBackwardOutput",
    "Future",
    "GetInfoResponse",
    "HubClient",
    "KFuture",
    "ListDataset",
    "LoadWeightsResponse",
    "LossFnType",
    "Message",
    "MetricsStore",
    "ModelData",
    "ModelInput",
    "OptimStepResponse",
    "RenderedChat",
    "Row",
    "SampleResponse",
    "SampledSequence",
    "SamplingClient",
    "SamplingParams",
    "SaveWeightsForSamplerResponse",
    "SaveWeightsResponse",
    "SerialWorker",
    "StopReason",
    "TensorData",
    "TokenizerClient",
    "TrainOn",
    "TrainingClient",
    "failed",
    "resolved",
]

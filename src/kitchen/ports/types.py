"""Value types shared by the ports.

They mirror the Tinker API (``tinker.types``) field for field, so the remote adapter maps
one to one, but they are plain frozen dataclasses with no numpy or torch dependency: the
core must import without either. Adapters convert to tensors at their edge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

TensorDtype = Literal["int64", "float32"]
LossFnType = Literal["cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "gspo"]
StopReason = Literal["length", "stop"]

#: Loss functions every TrainingClient must implement.
LOSS_FNS: tuple[LossFnType, ...] = (
    "cross_entropy",
    "importance_sampling",
    "ppo",
    "cispo",
    "dro",
    "gspo",
)

# Mirrors tinker's field-name → dtype table so plain lists get the wire dtype Tinker expects.
_KEY_TO_DTYPE: dict[str, TensorDtype] = {
    "target_tokens": "int64",
    "weights": "float32",
    "advantages": "float32",
    "logprobs": "float32",
}


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@dataclass(frozen=True)
class TensorData:
    """A dense tensor as a flat tuple of numbers, a dtype and a shape."""

    data: tuple[float, ...] | tuple[int, ...]
    dtype: TensorDtype
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        data = tuple(self.data)
        shape = tuple(self.shape) if self.shape else (len(data),)
        if _numel(shape) != len(data):
            raise ValueError(f"TensorData shape {shape} does not match {len(data)} values")
        if self.dtype == "int64":
            data = tuple(int(x) for x in data)
        elif self.dtype == "float32":
            data = tuple(float(x) for x in data)
        else:
            raise ValueError(f"unsupported TensorData dtype {self.dtype!r}; use int64 or float32")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "shape", shape)

    @classmethod
    def from_list(cls, values: Iterable[float] | Iterable[int], dtype: TensorDtype) -> TensorData:
        return cls(tuple(values), dtype)

    @classmethod
    def from_torch(cls, tensor: Any) -> TensorData:
        """Build from a torch tensor (the caller owns torch; this module never imports it)."""
        dtype: TensorDtype = "float32" if tensor.is_floating_point() else "int64"
        flat = tensor.detach().float() if dtype == "float32" else tensor.detach()
        return cls(tuple(flat.reshape(-1).tolist()), dtype, tuple(tensor.shape))

    def to_torch(self) -> Any:
        import torch  # lazy: only adapters that already use torch call this

        t = torch.tensor(self.data, dtype=torch.int64 if self.dtype == "int64" else torch.float32)
        return t.reshape(self.shape)

    def tolist(self) -> list[Any]:
        if len(self.shape) <= 1:
            return list(self.data)
        # Nest row-major.
        out: list[Any] = list(self.data)
        for dim in reversed(self.shape[1:]):
            out = [out[i : i + dim] for i in range(0, len(out), dim)]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"data": list(self.data), "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TensorData:
        return cls(tuple(obj["data"]), obj["dtype"], tuple(obj.get("shape") or ()))


@dataclass(frozen=True)
class EncodedTextChunk:
    """A run of token ids (Tinker's ``EncodedTextChunk``)."""

    tokens: tuple[int, ...]
    type: Literal["encoded_text"] = "encoded_text"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(int(t) for t in self.tokens))

    @property
    def length(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class ModelInput:
    """The tokens fed to a model, as a list of chunks (Tinker's ``ModelInput``)."""

    chunks: tuple[EncodedTextChunk, ...] = ()

    @classmethod
    def from_ints(cls, tokens: Iterable[int]) -> ModelInput:
        return cls((EncodedTextChunk(tuple(tokens)),))

    @classmethod
    def empty(cls) -> ModelInput:
        return cls(())

    def to_ints(self) -> list[int]:
        return [t for c in self.chunks for t in c.tokens]

    @property
    def length(self) -> int:
        return sum(c.length for c in self.chunks)

    def append_int(self, token: int) -> ModelInput:
        return ModelInput((*self.chunks, EncodedTextChunk((token,))))

    def append(self, chunk: EncodedTextChunk) -> ModelInput:
        return ModelInput((*self.chunks, chunk))

    def to_json(self) -> dict[str, Any]:
        return {"chunks": [{"type": c.type, "tokens": list(c.tokens)} for c in self.chunks]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ModelInput:
        return cls(tuple(EncodedTextChunk(tuple(c["tokens"])) for c in obj["chunks"]))


def _coerce_tensor(key: str, value: Any) -> TensorData:
    if isinstance(value, TensorData):
        return value
    if isinstance(value, ModelInput):  # tinker accepts target_tokens as a ModelInput
        return TensorData(tuple(value.to_ints()), "int64")
    if hasattr(value, "detach") and hasattr(value, "is_floating_point"):
        return TensorData.from_torch(value)
    if isinstance(value, list | tuple):
        dtype = _KEY_TO_DTYPE.get(key)
        if dtype is None:
            dtype = "int64" if all(isinstance(v, int) for v in value) else "float32"
        return TensorData(tuple(value), dtype)
    raise TypeError(f"loss_fn_inputs[{key!r}]: unsupported value of type {type(value).__name__}")


@dataclass(frozen=True)
class Datum:
    """One training example: model input plus per-token loss inputs (Tinker's ``Datum``).

    ``loss_fn_inputs`` holds, by loss function:

    - ``cross_entropy``: ``target_tokens`` (int64), ``weights`` (float32)
    - ``importance_sampling``: ``target_tokens``, ``logprobs`` (sampler), ``advantages``
    - ``ppo``: as importance_sampling; the clip range comes from ``loss_fn_config``

    Every tensor has one entry per input position.
    """

    model_input: ModelInput
    loss_fn_inputs: Mapping[str, TensorData] = field(default_factory=dict)

    def __post_init__(self) -> None:
        coerced = {k: _coerce_tensor(k, v) for k, v in dict(self.loss_fn_inputs).items()}
        object.__setattr__(self, "loss_fn_inputs", coerced)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_input": self.model_input.to_json(),
            "loss_fn_inputs": {k: v.to_json() for k, v in self.loss_fn_inputs.items()},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Datum:
        return cls(
            ModelInput.from_json(obj["model_input"]),
            {k: TensorData.from_json(v) for k, v in obj.get("loss_fn_inputs", {}).items()},
        )


@dataclass(frozen=True)
class AdamParams:
    """AdamW hyper-parameters for one optimiser step (Tinker's defaults)."""

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    #: Maximum global gradient norm; 0 disables clipping.
    grad_clip_norm: float = 0.0

    def __post_init__(self) -> None:
        for name in ("learning_rate", "eps", "weight_decay", "grad_clip_norm"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"AdamParams.{name} must be a finite number >= 0, got {v!r}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"AdamParams.{name} must be in [0, 1), got {v!r}")


@dataclass(frozen=True)
class SamplingParams:
    """Generation parameters (Tinker's ``SamplingParams``)."""

    max_tokens: int | None = None
    seed: int | None = None
    stop: str | Sequence[str] | Sequence[int] | None = None
    temperature: float = 1.0
    top_k: int = -1
    top_p: float = 1.0


@dataclass(frozen=True)
class SampledSequence:
    stop_reason: StopReason
    tokens: tuple[int, ...]
    #: One logprob per generated token under the model itself: ``log_softmax`` of the raw
    #: logits, before temperature / top-k / top-p (as Tinker returns them), so an RL
    #: importance ratio against the trainer's logprobs is 1 on policy, at any temperature.
    logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class SampleResponse:
    sequences: tuple[SampledSequence, ...]
    #: Per-prompt-token logprobs (``None`` for the first token) when requested.
    prompt_logprobs: tuple[float | None, ...] | None = None


LossFnOutput = Mapping[str, TensorData]


@dataclass(frozen=True)
class ForwardBackwardOutput:
    """Result of ``forward``/``forward_backward``.

    ``loss_fn_outputs`` has one dict per datum with at least ``logprobs`` (float32, one per
    position, the model's logprob of ``target_tokens``). ``metrics`` carries ``loss:sum``
    (Tinker's convention: the summed weighted loss) and kitchen also reports ``loss:mean``.
    """

    loss_fn_output_type: str
    loss_fn_outputs: tuple[LossFnOutput, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def loss(self) -> float:
        return float(self.metrics.get("loss:mean", self.metrics.get("loss:sum", math.nan)))


@dataclass(frozen=True)
class OptimStepResponse:
    metrics: Mapping[str, float] | None = None


@dataclass(frozen=True)
class SaveWeightsResponse:
    path: str


@dataclass(frozen=True)
class LoadWeightsResponse:
    path: str | None = None


@dataclass(frozen=True)
class SaveWeightsForSamplerResponse:
    path: str


@dataclass(frozen=True)
class ModelData:
    arch: str | None = None
    model_name: str | None = None
    tokenizer_id: str | None = None


@dataclass(frozen=True)
class GetInfoResponse:
    model_id: str
    model_data: ModelData = field(default_factory=ModelData)
    is_lora: bool | None = None
    lora_rank: int | None = None
    model_name: str | None = None
    #: Trainable / total parameter counts, when the backend knows them.
    trainable_params: int | None = None
    total_params: int | None = None

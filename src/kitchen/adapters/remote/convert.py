"""One-to-one conversions between kitchen's port types and the tinker SDK's types.

kitchen's value types mirror ``tinker.types`` field for field; these functions are the
only place the two meet. numpy arrays carry tensors across so large batches convert
without per-element Python work on the SDK side.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from tinker import types as tt

from kitchen.ports.futures import KFuture
from kitchen.ports.types import (
    AdamParams,
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    GetInfoResponse,
    LoadWeightsResponse,
    ModelData,
    ModelInput,
    OptimStepResponse,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
    TensorData,
    TensorDtype,
)

T = TypeVar("T")
U = TypeVar("U")

_NP = {"int64": np.int64, "float32": np.float32}


# -- kitchen → SDK ---------------------------------------------------------------------


def tensor_to_sdk(t: TensorData) -> tt.TensorData:
    arr = np.asarray(t.data, dtype=_NP[t.dtype]).reshape(t.shape)
    return tt.TensorData(data=arr, dtype=t.dtype, shape=list(t.shape))


def model_input_to_sdk(m: ModelInput) -> tt.ModelInput:
    return tt.ModelInput(chunks=[tt.EncodedTextChunk(tokens=list(c.tokens)) for c in m.chunks])


def datum_to_sdk(d: Datum) -> tt.Datum:
    return tt.Datum(
        model_input=model_input_to_sdk(d.model_input),
        loss_fn_inputs={k: tensor_to_sdk(v) for k, v in d.loss_fn_inputs.items()},
    )


def adam_to_sdk(p: AdamParams) -> tt.AdamParams:
    return tt.AdamParams(
        learning_rate=p.learning_rate,
        beta1=p.beta1,
        beta2=p.beta2,
        eps=p.eps,
        weight_decay=p.weight_decay,
        grad_clip_norm=p.grad_clip_norm,
    )


def sampling_params_to_sdk(p: SamplingParams) -> tt.SamplingParams:
    stop: Any = p.stop
    if isinstance(stop, tuple):
        stop = list(stop)
    return tt.SamplingParams(
        max_tokens=p.max_tokens,
        seed=p.seed,
        stop=stop,
        temperature=p.temperature,
        top_k=p.top_k,
        top_p=p.top_p,
    )


# -- SDK → kitchen ---------------------------------------------------------------------


def tensor_from_sdk(t: tt.TensorData) -> TensorData:
    arr = np.asarray(t.to_numpy() if hasattr(t, "to_numpy") else t.data)
    dtype: TensorDtype = "int64" if t.dtype == "int64" else "float32"
    shape = tuple(t.shape) if t.shape else (int(arr.size),)
    return TensorData(tuple(arr.reshape(-1).tolist()), dtype, shape)


def forward_backward_output_from_sdk(o: tt.ForwardBackwardOutput) -> ForwardBackwardOutput:
    return ForwardBackwardOutput(
        loss_fn_output_type=o.loss_fn_output_type,
        loss_fn_outputs=tuple(
            {k: tensor_from_sdk(v) for k, v in out.items()} for out in o.loss_fn_outputs
        ),
        metrics={k: float(v) for k, v in o.metrics.items()},
    )


def optim_step_from_sdk(o: tt.OptimStepResponse) -> OptimStepResponse:
    return OptimStepResponse(
        metrics=None if o.metrics is None else {k: float(v) for k, v in o.metrics.items()}
    )


def save_weights_from_sdk(o: tt.SaveWeightsResponse) -> SaveWeightsResponse:
    return SaveWeightsResponse(path=o.path)


def load_weights_from_sdk(o: tt.LoadWeightsResponse) -> LoadWeightsResponse:
    return LoadWeightsResponse(path=o.path)


def save_for_sampler_from_sdk(o: tt.SaveWeightsForSamplerResponse) -> SaveWeightsForSamplerResponse:
    return SaveWeightsForSamplerResponse(path=o.path)


def get_info_from_sdk(o: tt.GetInfoResponse) -> GetInfoResponse:
    md = o.model_data
    return GetInfoResponse(
        model_id=str(o.model_id),
        model_data=ModelData(arch=md.arch, model_name=md.model_name, tokenizer_id=md.tokenizer_id),
        is_lora=o.is_lora,
        lora_rank=o.lora_rank,
        model_name=o.model_name,
    )


def sample_response_from_sdk(o: tt.SampleResponse) -> SampleResponse:
    seqs = tuple(
        SampledSequence(
            stop_reason=s.stop_reason,
            tokens=tuple(int(t) for t in s.tokens),
            logprobs=None if s.logprobs is None else tuple(float(x) for x in s.logprobs),
        )
        for s in o.sequences
    )
    plp = o.prompt_logprobs
    return SampleResponse(
        sequences=seqs,
        prompt_logprobs=None
        if plp is None
        else tuple(None if x is None else float(x) for x in plp),
    )


def model_input_from_sdk(m: tt.ModelInput) -> ModelInput:
    chunks = []
    for c in m.chunks:
        if not isinstance(c, tt.EncodedTextChunk):
            raise ValueError(
                f"kitchen's ModelInput holds token chunks only, not {type(c).__name__}"
            )
        chunks.append(EncodedTextChunk(tuple(c.tokens)))
    return ModelInput(tuple(chunks))


# -- futures ---------------------------------------------------------------------------


def mapped(sdk_future: Any, fn: Callable[[Any], U]) -> KFuture[U]:
    """A kitchen future resolving to ``fn(result)`` of an SDK ``APIFuture``.

    The SDK future keeps running on the SDK's event loop thread, so calls can be issued
    back to back (pipelining) and awaited later, exactly as with the SDK itself.
    """
    inner: concurrent.futures.Future[Any] = (
        sdk_future.future() if hasattr(sdk_future, "future") else sdk_future
    )
    out: KFuture[U] = KFuture()

    def copy(f: concurrent.futures.Future[Any]) -> None:
        if f.cancelled():
            out.cancel()
            return
        exc = f.exception()
        if exc is not None:
            out.set_exception(exc)
            return
        try:
            out.set_result(fn(f.result()))
        except BaseException as err:
            out.set_exception(err)

    inner.add_done_callback(copy)
    return out


def metrics_of(m: Mapping[str, float] | None) -> dict[str, float]:
    return dict(m or {})


def datums_to_sdk(data: Sequence[Datum]) -> list[tt.Datum]:
    return [datum_to_sdk(d) for d in data]

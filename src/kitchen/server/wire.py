"""Wire encodings the pinned tinker SDK (0.38.x) uses, to and from kitchen's port types.

- ``/api/v1/forward_backward`` arrives as ``application/x-protobuf``
  (``tinker_public.ForwardBackwardRequest``): tokens packed as int32 bytes, tensors as
  dense little-endian bytes (sparse CSR is densified here).
- ``ForwardBackwardOutput`` and ``SampleResponse`` results go back as protobuf (the SDK
  asks with ``Accept: application/x-protobuf`` and refuses JSON for these two types).
- Everything else is JSON shaped like the SDK's pydantic models.

Only protobuf and JSON are decoded; nothing is ever unpickled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tinker.proto import tinker_public_pb2 as pb

from kitchen.ports.types import (
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ModelInput,
    SampleResponse,
    SamplingParams,
    TensorData,
)
from kitchen.server.schemas import ServerLimits

_NP: dict[int, Any] = {
    pb.DTYPE_FLOAT32: np.float32,
    pb.DTYPE_INT64: np.int64,
    pb.DTYPE_INT32: np.int32,
}
_KDTYPE: dict[int, str] = {
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_INT64: "int64",
    pb.DTYPE_INT32: "int64",
}


class WireError(ValueError):
    """The request body could not be decoded (a client error)."""


@dataclass(frozen=True)
class ForwardBackwardCall:
    model_id: str
    seq_id: int
    loss_fn: str
    loss_fn_config: dict[str, float] | None
    forward_only: bool
    data: list[Datum]


def _frombuffer(raw: bytes, dtype: Any, what: str) -> Any:
    itemsize = np.dtype(dtype).itemsize
    if len(raw) % itemsize:
        raise WireError(
            f"{what}: {len(raw)} bytes is not a whole number of {np.dtype(dtype).name} values"
        )
    return np.frombuffer(raw, dtype=dtype)


def _tensor_from_pb(msg: Any, key: str, limits: ServerLimits) -> TensorData:
    what = f"loss_fn_inputs[{key!r}]"
    np_dtype = _NP.get(msg.dtype)
    kdtype = _KDTYPE.get(msg.dtype)
    if np_dtype is None or kdtype is None:
        raise WireError(f"{what}: unsupported tensor dtype {msg.dtype}")
    shape = [int(s) for s in msg.shape]
    if len(shape) > 8 or any(s < 0 for s in shape):
        raise WireError(f"{what}: bad shape {shape} (at most 8 non-negative dimensions)")
    size = math.prod(shape) if shape else None
    if size is not None and size > limits.max_tensor_elements:
        raise WireError(
            f"{what}: shape {shape} has {size} elements, over this server's limit of "
            f"{limits.max_tensor_elements}"
        )
    if msg.HasField("sparse_csr"):
        csr = msg.sparse_csr
        values = _frombuffer(csr.values, np_dtype, f"{what} sparse values")
        crow = _frombuffer(csr.crow_indices, np.int64, f"{what} crow_indices")
        col = _frombuffer(csr.col_indices, np.int64, f"{what} col_indices")
        if len(shape) != 2 or len(crow) != shape[0] + 1 or len(col) != len(values):
            raise WireError(f"{what}: malformed sparse CSR tensor")
        if (
            crow[0] != 0
            or crow[-1] != len(values)
            or bool(np.any(np.diff(crow) < 0))
            or bool(np.any((col < 0) | (col >= shape[1])))
        ):
            raise WireError(
                f"{what}: sparse CSR indices out of range (crow must rise from 0 to "
                f"{len(values)}, col must lie in [0, {shape[1]}))"
            )
        dense = np.zeros(shape, dtype=np_dtype)
        for r in range(shape[0]):
            lo, hi = int(crow[r]), int(crow[r + 1])
            dense[r, col[lo:hi]] = values[lo:hi]
        arr = dense
    else:
        arr = _frombuffer(msg.dense, np_dtype, what)
        if arr.size > limits.max_tensor_elements:
            raise WireError(
                f"{what}: {arr.size} values, over the limit of {limits.max_tensor_elements}"
            )
    if not shape:
        shape = [int(arr.size)]
    if math.prod(shape) != arr.size:
        raise WireError(f"{what}: shape {shape} does not match {arr.size} values")
    return TensorData(tuple(arr.reshape(-1).tolist()), kdtype, tuple(shape))  # type: ignore[arg-type]


def _chunk_from_pb(msg: Any) -> EncodedTextChunk:
    which = msg.WhichOneof("chunk")
    if which != "encoded_text":
        raise WireError(f"model_input chunk type {which!r} is not supported by kitchen serve")
    tokens = _frombuffer(msg.encoded_text.tokens, np.int32, "model_input tokens")
    if tokens.size and int(tokens.min()) < 0:
        raise WireError("model_input tokens: token ids must be non-negative")
    return EncodedTextChunk(tuple(tokens.tolist()))


def decode_forward_backward(body: bytes, limits: ServerLimits | None = None) -> ForwardBackwardCall:
    """Decode and bound-check a ``ForwardBackwardRequest``: every size (datums, tokens,
    tensor elements, sparse indices) is checked before anything is allocated for it."""
    limits = limits or ServerLimits()
    msg = pb.ForwardBackwardRequest()
    try:
        msg.ParseFromString(body)
    except Exception as exc:  # protobuf's DecodeError
        raise WireError(f"malformed ForwardBackwardRequest protobuf: {exc}") from exc
    if len(msg.data) > limits.max_datums:
        raise WireError(
            f"{len(msg.data)} datums in one request, over this server's limit of "
            f"{limits.max_datums}; split the batch"
        )
    config: dict[str, float] | None = None
    if msg.loss_fn_config_v2:
        config = {}
        for k, v in msg.loss_fn_config_v2.items():
            if v.WhichOneof("value") == "text":
                raise WireError(f"loss_fn_config[{k!r}]: text values are not supported")
            config[k] = float(v.number)
    elif msg.loss_fn_config:
        config = {k: float(v) for k, v in msg.loss_fn_config.items()}
    if config and not all(math.isfinite(v) for v in config.values()):
        raise WireError("loss_fn_config: values must be finite numbers")
    data: list[Datum] = []
    for d in msg.data:
        model_input = ModelInput(tuple(_chunk_from_pb(c) for c in d.model_input))
        n_tokens = sum(len(c.tokens) for c in model_input.chunks)
        if n_tokens > limits.max_prompt_tokens:
            raise WireError(
                f"a datum has {n_tokens} tokens, over this server's limit of "
                f"{limits.max_prompt_tokens}"
            )
        inputs = {k: _tensor_from_pb(v, k, limits) for k, v in d.loss_fn_inputs.items()}
        data.append(Datum(model_input, inputs))
    if msg.seq_id < 0:
        raise WireError(f"seq_id must be non-negative, got {msg.seq_id}")
    return ForwardBackwardCall(
        model_id=msg.model_id,
        seq_id=int(msg.seq_id),
        loss_fn=msg.loss_fn,
        loss_fn_config=config,
        forward_only=bool(msg.forward_only),
        data=data,
    )


def _pb_dtype(dtype: str) -> int:
    return pb.DTYPE_INT64 if dtype == "int64" else pb.DTYPE_FLOAT32


def _clean_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    # The SDK combines chunk results by splitting each key on ':' into (name, reduction);
    # a key without exactly one ':' would crash it, so such keys are dropped.
    return {k: float(v) for k, v in metrics.items() if k.count(":") == 1}


def encode_forward_backward_output(out: ForwardBackwardOutput) -> bytes:
    msg = pb.ForwardBackwardOutput()
    msg.loss_fn_output_type = out.loss_fn_output_type or "ArrayRecord"
    for k, v in _clean_metrics(out.metrics).items():
        msg.metrics[k] = v
    outputs = list(out.loss_fn_outputs)
    if outputs:
        # Group datums into runs sharing (fields, dtypes, trailing shapes): one ArrayRecord each.
        def sig(o: Mapping[str, TensorData]) -> tuple[Any, ...]:
            return tuple(sorted((k, t.dtype, tuple(t.shape[1:])) for k, t in o.items()))

        start = 0
        while start < len(outputs):
            end = start + 1
            while end < len(outputs) and sig(outputs[end]) == sig(outputs[start]):
                end += 1
            rec = msg.loss_fn_outputs.add()
            rec.type_tag = msg.loss_fn_output_type
            rec.num_datums = end - start
            for key, first in outputs[start].items():
                np_dtype = np.int64 if first.dtype == "int64" else np.float32
                arrays = [np.asarray(o[key].data, dtype=np_dtype) for o in outputs[start:end]]
                offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
                offsets[1:] = np.cumsum([a.nbytes for a in arrays])
                bt = rec.fields[key]
                bt.data = b"".join(a.tobytes() for a in arrays)
                bt.offsets = offsets.tobytes()
                bt.dtype = _pb_dtype(first.dtype)
                bt.trailing_shape.extend(int(s) for s in first.shape[1:])
            start = end
    return msg.SerializeToString()


def encode_sample_response(
    resp: SampleResponse,
    topk_prompt: tuple[Sequence[Sequence[tuple[int, float]] | None], int] | None = None,
) -> bytes:
    """``topk_prompt``: ``(per-position top-k lists, k)`` when top-k prompt logprobs
    were asked for."""
    msg = pb.SampleResponse()
    if topk_prompt is not None:
        msg.topk_prompt_logprobs.CopyFrom(encode_topk(*topk_prompt))
    for seq in resp.sequences:
        s = msg.sequences.add()
        s.stop_reason = (
            pb.STOP_REASON_LENGTH if seq.stop_reason == "length" else pb.STOP_REASON_STOP
        )
        s.tokens = np.asarray(seq.tokens, dtype=np.int32).tobytes()
        if seq.logprobs is not None:
            s.logprobs = np.asarray(seq.logprobs, dtype=np.float32).tobytes()
    if resp.prompt_logprobs is not None:
        vals = [math.nan if v is None else float(v) for v in resp.prompt_logprobs]
        msg.prompt_logprobs = np.asarray(vals, dtype=np.float32).tobytes()
    return msg.SerializeToString()


def model_input_from_json(obj: Mapping[str, Any]) -> ModelInput:
    chunks = []
    for c in obj.get("chunks") or []:
        if c.get("type", "encoded_text") != "encoded_text":
            raise WireError(f"model_input chunk type {c.get('type')!r} is not supported")
        chunks.append(EncodedTextChunk(tuple(int(t) for t in c["tokens"])))
    return ModelInput(tuple(chunks))


def sampling_params_from_json(obj: Mapping[str, Any]) -> SamplingParams:
    stop = obj.get("stop")
    if isinstance(stop, list):
        stop = tuple(stop)
    return SamplingParams(
        max_tokens=obj.get("max_tokens"),
        seed=obj.get("seed"),
        stop=stop,
        temperature=float(obj.get("temperature", 1.0)),
        top_k=int(obj.get("top_k", -1)),
        top_p=float(obj.get("top_p", 1.0)),
    )


def metrics_json(metrics: Mapping[str, float] | None) -> dict[str, float] | None:
    if metrics is None:
        return None
    return {str(k): float(v) for k, v in metrics.items()}


def tokens_json(tokens: Sequence[int]) -> list[int]:
    return [int(t) for t in tokens]


#: ``optim_step`` metrics kitchen's adapters report that Tinker does not: a ``step``
#: counter would overwrite the caller's own step numbers when merged into its metrics.
_NOT_TINKER_OPTIM_METRICS = frozenset({"step"})


def optim_metrics_json(metrics: Mapping[str, float] | None) -> dict[str, float] | None:
    """``optim_step`` metrics as the server returns them (``grad_norm``, ``learning_rate``,
    ``nonfinite_grad`` when set), without adapter-only counters."""
    out = metrics_json(metrics)
    if out is None:
        return None
    return {k: v for k, v in out.items() if k not in _NOT_TINKER_OPTIM_METRICS}


#: ``TopkLogprobs`` filler for a position without logprobs (the SDK's ``MASK_LOGPROB``).
TOPK_MASK_LOGPROB = -99999.0


def encode_topk(rows: Sequence[Sequence[tuple[int, float]] | None], k: int) -> Any:
    """Per-position top-k ``(token, logprob)`` lists as a protobuf ``TopkLogprobs``."""
    n = len(rows)
    ids = np.zeros((n, k), dtype=np.int32)
    lps = np.full((n, k), TOPK_MASK_LOGPROB, dtype=np.float32)
    for i, row in enumerate(rows):
        for j, (tok, lp) in enumerate((row or [])[:k]):
            ids[i, j], lps[i, j] = tok, lp
    msg = pb.TopkLogprobs()
    msg.token_ids, msg.logprobs, msg.k, msg.length = ids.tobytes(), lps.tobytes(), k, n
    return msg

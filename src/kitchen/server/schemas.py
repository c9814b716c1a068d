"""Schemas of the JSON request bodies ``kitchen serve`` accepts, and its per-request caps.

Every JSON route validates its body against one of these models *before* it touches
server state, so a malformed body is a 400 with a JSON ``detail`` naming the field, never
a Python exception (500). The models follow the pinned tinker SDK's request types: fields
the SDK sends that kitchen does not use (``type``, ``ttl_seconds`` ...) are ignored, known
fields are strictly typed (a string ``seq_id`` or a ``true`` count is refused, not
coerced), and sizes are bounded by :class:`ServerLimits`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

M = TypeVar("M", bound=BaseModel)

#: Ids and names: non-empty, short, no NUL.
Id = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\x00]*$")]
SeqId = Annotated[int, Field(ge=0, le=2**62)]
Token = Annotated[int, Field(ge=0, lt=2**31)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=4096)]],
    Field(max_length=64),
]


@dataclass(frozen=True)
class ServerLimits:
    """Per-request caps; a request above one is a 400 naming the cap and its value."""

    #: ``num_samples`` of one sample request.
    max_num_samples: int = 64
    #: ``sampling_params.max_tokens`` of one sample request.
    max_tokens: int = 4096
    #: Tokens in one prompt (sampling) or one datum's model input (training).
    max_prompt_tokens: int = 65536
    #: Datums in one forward/forward_backward request.
    max_datums: int = 4096
    #: Elements of one decoded tensor (a sparse tensor's dense size counts).
    max_tensor_elements: int = 1 << 24
    #: Nesting depth of a JSON body.
    max_json_depth: int = 32


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class SessionBody(_Body):
    session_id: Id


class RequestIdBody(_Body):
    request_id: Id


class ModelIdBody(_Body):
    model_id: Id


class SamplerIdBody(_Body):
    sampling_session_id: Id


class LoraBody(_Body):
    rank: Annotated[int, Field(ge=1, le=1024)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    train_mlp: bool = True
    train_attn: bool = True
    train_unembed: bool = True


class OptimizerBody(_Body):
    type: Annotated[str, Field(max_length=64)] = "adamw"


class CreateModelBody(_Body):
    session_id: Id
    base_model: Id
    model_seq_id: SeqId
    lora_config: LoraBody | None = None
    optimizer_config: OptimizerBody | None = None
    user_metadata: dict[str, Any] | None = Field(None, max_length=64)


class AdamBody(_Body):
    learning_rate: Annotated[float, Field(ge=0, le=1e3, allow_inf_nan=False)] = 1e-4
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.95
    eps: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1e-12
    weight_decay: Annotated[float, Field(ge=0, le=1e3, allow_inf_nan=False)] = 0.0
    grad_clip_norm: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = 0.0


class OptimStepBody(_Body):
    model_id: Id
    seq_id: SeqId | None = None
    adam_params: AdamBody = Field(
        validation_alias=AliasChoices("adam_params", "optim_params", "optimizer_params")
    )


class SaveWeightsBody(_Body):
    model_id: Id
    seq_id: SeqId | None = None
    path: Id | None = None
    overwrite: bool = False
    user_metadata: Metadata | None = None


class SaveForSamplerBody(_Body):
    model_id: Id
    seq_id: SeqId | None = None
    path: Id | None = None
    sampling_session_seq_id: SeqId | None = None


class LoadWeightsBody(_Body):
    path: Annotated[str, Field(min_length=1, max_length=2048)]
    optimizer: bool = True
    model_id: Id | None = None
    seq_id: SeqId | None = None
    session_id: Id | None = None
    model_seq_id: SeqId | None = None
    base_model: Id | None = None
    user_metadata: dict[str, Any] | None = Field(None, max_length=64)


class SaveWeightsExternalBody(_Body):
    model_id: Id
    path: Id
    seq_id: SeqId | None = None
    ttl_seconds: Annotated[int, Field(ge=0, le=2**62)] | None = None
    age_encryption_recipients: list[Id] | None = Field(None, max_length=16)


class TinkerPathBody(_Body):
    tinker_path: Annotated[str, Field(min_length=1, max_length=2048)]


class CreateSamplerBody(_Body):
    session_id: Id
    sampling_session_seq_id: SeqId
    model_path: Annotated[str, Field(max_length=2048)] | None = None
    base_model: Id | None = None


class ChunkBody(_Body):
    type: Literal["encoded_text"] = "encoded_text"
    tokens: list[Token]


class PromptBody(_Body):
    chunks: list[ChunkBody] = Field(max_length=4096)


class SamplingParamsBody(_Body):
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    stop: (
        Annotated[str, Field(max_length=1024)]
        | Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=64)]
        | Annotated[list[Token], Field(max_length=64)]
        | None
    ) = None
    temperature: Annotated[float, Field(ge=0, le=1e3, allow_inf_nan=False)] = 1.0
    top_k: Annotated[int, Field(ge=-1, lt=2**31)] = -1
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0


class SampleBody(_Body):
    sampling_session_id: Id
    prompt: PromptBody
    sampling_params: SamplingParamsBody = Field(default_factory=SamplingParamsBody)
    num_samples: Annotated[int, Field(ge=1)] = 1
    seq_id: SeqId | None = None
    prompt_logprobs: bool | None = None
    prompt_logprobs_last_n: Annotated[int, Field(ge=0, lt=2**31)] | None = None
    topk_prompt_logprobs: Annotated[int, Field(ge=0, lt=2**31)] = 0
    topk_sample_logprobs: Annotated[int, Field(ge=0, lt=2**31)] = 0
    prompt_alt_tokens_k: Annotated[int, Field(ge=0, lt=2**31)] = 0
    target_prompt_logprobs: Any = None

    def check_limits(self, limits: ServerLimits) -> None:
        if self.num_samples > limits.max_num_samples:
            raise LimitExceeded("num_samples", self.num_samples, limits.max_num_samples)
        mt = self.sampling_params.max_tokens
        if mt is not None and mt > limits.max_tokens:
            raise LimitExceeded("sampling_params.max_tokens", mt, limits.max_tokens)
        n = sum(len(c.tokens) for c in self.prompt.chunks)
        if n > limits.max_prompt_tokens:
            raise LimitExceeded("prompt tokens", n, limits.max_prompt_tokens)


class BadBody(ValueError):
    """A request body that does not match its schema (answered 400, or 413 for depth)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


class LimitExceeded(BadBody):
    def __init__(self, field: str, value: int, cap: int) -> None:
        super().__init__(
            f"{field}={value} exceeds this server's limit of {cap}; split the request or ask "
            "the operator to raise the cap (kitchen serve --help)"
        )


def json_depth_ok(raw: bytes, limit: int) -> bool:
    """True when ``raw`` nests arrays/objects at most ``limit`` deep (a scan over the bytes,
    so a deep document is refused before the recursive JSON parser sees it)."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def parse_json(raw: bytes, limits: ServerLimits) -> dict[str, Any]:
    """The body as a JSON object, refusing deep nesting, bad UTF-8 and non-objects."""
    if not raw.strip():
        return {}
    if not json_depth_ok(raw, limits.max_json_depth):
        raise BadBody(f"request body nests deeper than {limits.max_json_depth} levels", 413)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise BadBody(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadBody(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def validate_body(model: type[M], data: dict[str, Any]) -> M:
    """``model`` from ``data``, or :class:`BadBody` naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        err = errors[0]
        field = ".".join(str(p) for p in err["loc"]) or "<body>"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BadBody(f"field {field!r}: {err['msg']}{more}") from None

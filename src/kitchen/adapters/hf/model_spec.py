"""What model to train and how: a validated spec, and the loader that builds it.

A :class:`ModelSpec` names exactly one source — a local ``path``, a ``hub_id`` (fetched only
when the hub is reachable; with ``HF_HUB_OFFLINE`` set only the local cache is used) or a
``config`` dict for a small model built from scratch — and a training ``mode``:

- ``full``: every parameter trains;
- ``lora``: a peft LoRA adapter over frozen base weights;
- ``qlora``: base weights quantised to 4-bit NF4 with bitsandbytes (works on CPU with
  bitsandbytes >= 0.49), ``prepare_model_for_kbit_training``, then LoRA.

:func:`load_model` does the heavy work; nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from pydantic import ConfigDict, Field, field_validator, model_validator

from kitchen.adapters.hf.device import (
    DEVICE_CHOICES,
    Placement,
    Probes,
    resolve_device,
    resolve_dtype,
    resolve_placement,
)
from kitchen.config import KitchenConfig
from kitchen.errors import UsageError

Mode = Literal["lora", "qlora", "full"]
#: How a multi-process job lays the model out: ``replicate`` keeps a whole copy per rank and
#: sums gradients at ``optim_step`` (:mod:`.distributed`); ``fsdp`` shards parameters,
#: gradients and optimiser state over the ranks with FSDP2 (:mod:`.fsdp`).
Parallel = Literal["replicate", "fsdp"]
DType = Literal["float32", "bfloat16", "float16", "auto"]

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


#: Bounds of the sizes in a from-scratch ``config`` (a typo such as ``vocab_size=1e11``
#: would otherwise hang in a huge allocation instead of failing).
CONFIG_SIZE_BOUNDS: dict[str, tuple[int, int]] = {
    "vocab_size": (2, 1 << 22),
    "hidden_size": (1, 1 << 16),
    "intermediate_size": (1, 1 << 18),
    "num_hidden_layers": (1, 1024),
    "num_attention_heads": (1, 1024),
    "num_key_value_heads": (1, 1024),
    "max_position_embeddings": (1, 1 << 22),
}


class LoraSpec(KitchenConfig):
    """LoRA adapter settings (peft ``LoraConfig``)."""

    model_config = ConfigDict(extra="forbid")

    rank: Annotated[int, Field(ge=1)] = 8
    alpha: Annotated[int, Field(gt=0)] = 16
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    #: ``"all-linear"`` = every linear projection except the output head (peft's shorthand).
    target_modules: str | list[str] = "all-linear"


class QuantSpec(KitchenConfig):
    """4-bit quantisation settings used by ``mode="qlora"``."""

    model_config = ConfigDict(extra="forbid")

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    #: Matmul dtype of the quantised layers; ``None`` = float32 on CPU, bfloat16 on GPU.
    compute_dtype: Literal["float32", "bfloat16", "float16"] | None = None


class ModelSpec(KitchenConfig):
    """A model to train: one source (``path`` | ``hub_id`` | ``config``) plus a mode."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    #: Architecture for a model from scratch, e.g. ``{"model_type": "llama", "hidden_size": 64}``.
    config: dict[str, Any] | None = None
    mode: Mode = "lora"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    quant: QuantSpec = Field(default_factory=QuantSpec)
    #: ``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; under
    #: torchrun/accelerate ``cuda`` is ``cuda:LOCAL_RANK``. See :mod:`kitchen.adapters.hf.device`.
    device: str = "auto"
    #: Weight dtype; ``auto`` = bfloat16 on CUDA (LoRA/QLoRA, where supported), else float32.
    #: Logprobs, losses and optimizer math are float32 whatever this is.
    dtype: DType = "auto"
    #: Seeds the from-config init and the LoRA init (global RNG state is left untouched).
    seed: int = Field(0, ge=0, lt=2**32)
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    #: Pack each call's datums padding-free into rows (position ids restart per datum,
    #: block-diagonal attention); losses and gradients equal the unpacked path's.
    packing: bool = False
    #: Longest packed row in tokens; ``None`` = the call's longest datum (never wider than
    #: the padded batch). Larger values pack tighter at a quadratic attention cost per row.
    pack_length: Annotated[int, Field(ge=1)] | None = None
    #: ``replicate`` (default; also what one process does) or ``fsdp`` (needs >= 2
    #: processes under torchrun / accelerate launch). See docs/hf.md for which to choose.
    parallel: Parallel = "replicate"

    #: Positions per chunk of the LM head + log-softmax (recomputed in backward, so no step
    #: holds ``[batch, tokens, vocab]`` logits); ``0`` = the unchunked full-logits path.
    logprob_chunk_size: Annotated[int, Field(ge=0)] = 512

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        v = value.strip().lower()
        if v in ("auto", "cpu", "mps", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError(f"unknown device {value!r}; choose one of {', '.join(DEVICE_CHOICES)}")

    @field_validator("config")
    @classmethod
    def _sane_config_sizes(cls, config: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, (lo, hi) in CONFIG_SIZE_BOUNDS.items():
            value = (config or {}).get(key)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"{key} must be an integer in [{lo}, {hi}], got {value!r}")
        return config

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        given = [k for k in ("path", "hub_id", "config") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "ModelSpec needs exactly one of path, hub_id or config "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.config is not None and "model_type" not in self.config:
            raise ValueError('ModelSpec.config needs a "model_type" key, e.g. "llama"')
        return self

    @property
    def is_lora(self) -> bool:
        return self.mode in ("lora", "qlora")

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.path:
            return os.path.basename(os.path.normpath(self.path)) or self.path
        if self.hub_id:
            return self.hub_id
        assert self.config is not None
        return f"{self.config['model_type']}-from-config"


@dataclass
class LoadedModel:
    """A model ready to train, with what the adapter needs to know about it."""

    model: Any
    spec: ModelSpec
    device: torch.device
    vocab_size: int
    #: The weights' dtype (trainable LoRA weights stay float32; see peft's autocast).
    dtype: torch.dtype = torch.float32

    def trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Trainable parameters by name, in a stable order (optimizer state is keyed on it)."""
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


#: torch's global RNG is process-wide: seeded blocks on different threads (a sampler loading
#: a from-config base while a shared base adds an adapter) must not interleave.
_SEEDED_LOCK = threading.RLock()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch inside the block and give the caller's global RNG state back afterwards
    (one block at a time across threads)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with _SEEDED_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def placement(
    spec: ModelSpec, device: str | torch.device | None = None, probes: Probes | None = None
) -> Placement:
    """Device and weight dtype for ``spec``; ``device`` overrides ``spec.device``."""
    if device is None:
        return resolve_placement(spec, probes)
    dev = resolve_device(str(device), probes)
    return Placement(dev, resolve_dtype(spec.dtype, dev, probes, full_finetune=spec.mode == "full"))


def _compute_dtype(spec: ModelSpec, place: Placement) -> torch.dtype:
    if spec.quant.compute_dtype is not None:
        return _DTYPES[spec.quant.compute_dtype]
    if place.dtype != torch.float32:
        return place.dtype
    return torch.bfloat16 if place.device.type == "cuda" else torch.float32


def _bnb_config(spec: ModelSpec, place: Placement) -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=spec.quant.quant_type,
        bnb_4bit_use_double_quant=spec.quant.double_quant,
        bnb_4bit_compute_dtype=_compute_dtype(spec, place),
    )


def _pretrained_kwargs(spec: ModelSpec, place: Placement) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": place.dtype}
    if spec.trust_remote_code:
        kwargs["trust_remote_code"] = True
    if spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    if spec.mode == "qlora":
        kwargs["quantization_config"] = _bnb_config(spec, place)
        # bitsandbytes places quantised weights as they load; it needs an explicit map.
        kwargs["device_map"] = {"": str(place.device)}
        kwargs["dtype"] = _compute_dtype(spec, place)
    return kwargs


def _from_config(spec: ModelSpec, place: Placement) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = dict(spec.config or {})
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    if spec.attn_implementation:
        config._attn_implementation = spec.attn_implementation
    # Initialised in float32 on the CPU (the same numbers on every device), then cast.
    with seeded(spec.seed, torch.device("cpu")):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if spec.mode != "qlora" and place.dtype != torch.float32:
        model = model.to(place.dtype)
    if spec.mode != "qlora":
        return model
    # bitsandbytes quantises while loading from disk, so round-trip the fresh weights through
    # a scratch directory (deleted right away; no checkpoint semantics, hence no io.py).
    with tempfile.TemporaryDirectory(prefix="kitchen-qlora-") as tmp:
        # Not save_pretrained: under a process group transformers writes on rank 0 only,
        # and every rank needs its own copy to quantise.
        from safetensors.torch import save_model

        model.config.save_pretrained(tmp)
        save_model(model, os.path.join(tmp, "model.safetensors"))
        del model
        return AutoModelForCausalLM.from_pretrained(tmp, **_pretrained_kwargs(spec, place))


def _from_source(spec: ModelSpec, place: Placement) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs = _pretrained_kwargs(spec, place)
    if spec.path is not None:
        if not os.path.isdir(spec.path):
            raise UsageError(f"ModelSpec.path {spec.path!r} is not a directory")
        return AutoModelForCausalLM.from_pretrained(spec.path, **kwargs)
    assert spec.hub_id is not None
    if hub_offline():
        # Resolve the cached snapshot ourselves: transformers reads the offline flag once at
        # import and may still probe the network if the variable was set later.
        from huggingface_hub import snapshot_download

        try:
            local = snapshot_download(spec.hub_id, revision=spec.revision, local_files_only=True)
        except Exception as exc:  # LocalEntryNotFoundError and friends
            raise UsageError(
                f"model {spec.hub_id!r} is not in the local Hugging Face cache and "
                "HF_HUB_OFFLINE is set; download it on a connected machine "
                f"(huggingface-cli download {spec.hub_id}) or point ModelSpec.path at a copy"
            ) from exc
        return AutoModelForCausalLM.from_pretrained(local, **kwargs)
    try:
        return AutoModelForCausalLM.from_pretrained(spec.hub_id, revision=spec.revision, **kwargs)
    except OSError as exc:
        raise UsageError(
            f"cannot load model {spec.hub_id!r} from the Hugging Face hub ({exc}); check the id "
            "and network, or set ModelSpec.path to a local copy"
        ) from exc


def lora_config(spec: ModelSpec) -> Any:
    """The peft ``LoraConfig`` of ``spec.lora`` (one definition for standalone clients and
    the server's shared-base tenants, so both initialise and train the same adapter)."""
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora.rank,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        target_modules=spec.lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _apply_mode(model: Any, spec: ModelSpec) -> Any:
    if spec.mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        if spec.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    cfg = lora_config(spec)
    with warnings.catch_warnings():
        # peft calls a transformers API deprecated in v5; nothing for users to act on.
        warnings.simplefilter("ignore", FutureWarning)
        if spec.mode == "qlora":
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=spec.gradient_checkpointing
            )
        elif spec.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        with seeded(spec.seed + 1, torch.device("cpu")):
            return get_peft_model(model, cfg)


def load_base(spec: ModelSpec, device: str | torch.device | None = None) -> Any:
    """The base model named by ``spec`` (quantised for qlora), without any adapter, on
    ``device`` (default: ``spec.device`` resolved, see :mod:`kitchen.adapters.hf.device`)."""
    place = placement(spec, device)
    model = _from_config(spec, place) if spec.config is not None else _from_source(spec, place)
    if spec.mode != "qlora":
        model = model.to(place.device)
    else:
        _disable_cpu_repack(model)
    return model


def _disable_cpu_repack(model: Any) -> None:
    """Turn off bitsandbytes' CPU inference fast path on every 4-bit layer.

    In eval mode without grad, ``Linear4bit`` on an AVX512-BF16 CPU repacks its weight *in
    place* into another layout. That breaks here three ways: the weight is shared between the
    training model and sampling snapshots (and training-mode matmuls expect the original
    layout), results would differ between ``forward`` and ``forward_backward``, and the repack
    fails outright for layers narrower than the quantisation block (tiny test models).
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_model(spec: ModelSpec, device: str | torch.device | None = None) -> LoadedModel:
    """Build the model for ``spec`` on ``device`` (default: ``spec.device`` resolved) with the
    right parameters trainable."""
    place = placement(spec, device)
    model = _apply_mode(load_base(spec, place.device), spec)
    emb = model.get_input_embeddings()
    vocab = int(emb.num_embeddings) if emb is not None else int(model.config.vocab_size)
    return LoadedModel(
        model=model, spec=spec, device=place.device, vocab_size=vocab, dtype=place.dtype
    )


def is_4bit(param: Any) -> bool:
    """Whether ``param`` is a bitsandbytes 4-bit weight."""
    return type(param).__name__ == "Params4bit"

"""Where an hf model lives and in which precision: the one resolution of ``model.device`` and
``model.dtype``.

Every place that builds an hf model (the training client, ``HfSamplingClient.from_weights``,
export/merge, ``kitchen run --adapters hf``, ``kitchen serve --backend hf``, the examples)
calls :func:`resolve_placement`, so they all agree.

``model.device``:

- ``auto`` (default): ``cuda`` when CUDA is available, else ``mps``, else ``cpu``;
- ``cpu``, ``mps``, ``cuda`` or ``cuda:N``. Under ``torchrun`` / ``accelerate launch``
  (``LOCAL_RANK`` set) a bare ``cuda`` (and ``auto`` resolving to CUDA) means
  ``cuda:LOCAL_RANK``: one process per GPU.

``model.dtype`` (the dtype of the model's *weights*):

- ``auto`` (default): ``bfloat16`` on a CUDA device that supports it, else ``float32``. On
  MPS ``auto`` is ``float32``: bf16 kernels on MPS depend on the macOS version and several
  ops fall back or fail, so ask for ``bfloat16`` explicitly if your Mac has them. ``float16``
  is never chosen automatically: kitchen does no loss scaling, and fp16 gradients underflow.
  ``mode: full`` with ``auto`` stays ``float32`` everywhere, so AdamW updates fp32 master
  weights (LoRA adapters are kept in float32 by peft whatever the base's dtype).
- ``float32``, ``bfloat16``, ``float16``: as asked.

Whatever the weights' dtype, logprobs, losses and the optimizer's arithmetic run in float32
(or float64 for the loss sum), see :mod:`kitchen.adapters.hf.logprobs`.

The availability probes are a parameter (:class:`Probes`), so tests resolve for machines
they are not running on without patching torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from kitchen.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _cuda_bf16() -> bool:
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _local_rank() -> int | None:
    value = os.environ.get("LOCAL_RANK", "").strip()
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class Probes:
    """What this machine has. The defaults ask torch and the launcher's environment."""

    cuda_available: Callable[[], bool] = torch.cuda.is_available
    cuda_device_count: Callable[[], int] = torch.cuda.device_count
    cuda_bf16_supported: Callable[[], bool] = _cuda_bf16
    mps_available: Callable[[], bool] = _mps_available
    #: ``LOCAL_RANK`` under torchrun / accelerate launch, else None.
    local_rank: Callable[[], int | None] = _local_rank


@dataclass(frozen=True)
class Placement:
    """A resolved device and weight dtype."""

    device: torch.device
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def _unavailable(requested: str, why: str) -> ConfigError:
    return ConfigError(
        "model.device",
        f"{requested!r} is not available on this machine ({why}); "
        "set model.device=auto or model.device=cpu",
    )


def resolve_device(requested: str | None, probes: Probes | None = None) -> torch.device:
    """The ``torch.device`` that ``model.device = requested`` names on this machine.

    Raises :class:`~kitchen.errors.ConfigError` (field ``model.device``, CLI exit 2) for an
    unknown value or a device that is not there.
    """
    pr = probes or Probes()
    req = (requested or "auto").strip().lower()
    if req == "auto":
        if pr.cuda_available():
            return _cuda(None, req, pr)
        if pr.mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if req == "cpu":
        return torch.device("cpu")
    if req == "mps":
        if not pr.mps_available():
            raise _unavailable(req, "torch reports no MPS backend")
        return torch.device("mps")
    m = _CUDA_RE.match(req)
    if m is None:
        raise ConfigError(
            "model.device",
            f"unknown device {requested!r}; choose one of {', '.join(DEVICE_CHOICES)}",
        )
    return _cuda(None if m.group(1) is None else int(m.group(1)), req, pr)


def _cuda(index: int | None, req: str, pr: Probes) -> torch.device:
    if not pr.cuda_available():
        raise _unavailable(req, "torch reports no CUDA device")
    if index is None:
        local = pr.local_rank()
        index = 0 if local is None else local
    count = pr.cuda_device_count()
    if index >= count:
        raise _unavailable(f"cuda:{index}", f"{count} CUDA device(s) visible")
    return torch.device("cuda", index)


def resolve_dtype(
    requested: str | None,
    device: torch.device,
    probes: Probes | None = None,
    *,
    full_finetune: bool = False,
) -> torch.dtype:
    """The weight dtype that ``model.dtype = requested`` means on ``device``."""
    req = (requested or "auto").strip().lower()
    if req != "auto":
        if req not in _DTYPES:
            raise ConfigError(
                "model.dtype", f"unknown dtype {requested!r}; choose auto, {', '.join(_DTYPES)}"
            )
        return _DTYPES[req]
    pr = probes or Probes()
    if device.type == "cuda" and not full_finetune and pr.cuda_bf16_supported():
        return torch.bfloat16
    return torch.float32


def resolve_placement(spec: Any, probes: Probes | None = None) -> Placement:
    """Device and dtype for a :class:`~kitchen.adapters.hf.model_spec.ModelSpec`."""
    device = resolve_device(getattr(spec, "device", "auto"), probes)
    dtype = resolve_dtype(
        getattr(spec, "dtype", "auto"),
        device,
        probes,
        full_finetune=getattr(spec, "mode", "lora") == "full",
    )
    return Placement(device=device, dtype=dtype)


def loss_dtype(device: torch.device) -> torch.dtype:
    """The dtype of kitchen's loss arithmetic: float64, except on MPS (which has none)."""
    return torch.float32 if device.type == "mps" else torch.float64


def hardware_manifest(placement: Placement) -> dict[str, Any]:
    """What the run manifest records about where the model ran."""
    info: dict[str, Any] = {
        "device": str(placement.device),
        "dtype": placement.dtype_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": None,
    }
    if placement.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(placement.device)
    elif placement.device.type == "mps":
        info["gpu"] = "Apple MPS"
    return info

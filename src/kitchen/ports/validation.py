"""Checks every TrainingClient applies to its inputs before doing any work."""

from __future__ import annotations

from collections.abc import Sequence

from kitchen.ports.losses import REQUIRED_INPUTS, UNSUPPORTED
from kitchen.ports.types import Datum


def validate_datums(data: Sequence[Datum], loss_fn: str) -> None:
    """Raise ``ValueError`` naming the datum and field when ``data`` cannot feed ``loss_fn``."""
    if loss_fn in UNSUPPORTED:
        raise ValueError(f"loss_fn {loss_fn!r} is not supported: {UNSUPPORTED[loss_fn]}")
    if loss_fn not in REQUIRED_INPUTS:
        raise ValueError(f"unknown loss_fn {loss_fn!r}; choose one of {sorted(REQUIRED_INPUTS)}")
    if len(data) == 0:
        raise ValueError("forward_backward needs at least one Datum")
    for i, datum in enumerate(data):
        n = datum.model_input.length
        if n == 0:
            raise ValueError(f"datum {i}: model_input is empty")
        for key in REQUIRED_INPUTS[loss_fn]:
            if key not in datum.loss_fn_inputs:
                raise ValueError(f"datum {i}: loss_fn {loss_fn!r} needs loss_fn_inputs[{key!r}]")
        for key, tensor in datum.loss_fn_inputs.items():
            if tensor.shape[0] != n:
                raise ValueError(
                    f"datum {i}: loss_fn_inputs[{key!r}] has {tensor.shape[0]} entries "
                    f"but model_input has {n} tokens; they must be aligned"
                )

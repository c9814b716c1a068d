"""Datums → padded tensors (one place, so packing can later add its own layout).

Each datum becomes one right-padded row. ``loss_fn_inputs`` tensors are aligned with the
input tokens, padded with zeros, and a boolean ``mask`` marks the real positions. Inputs a
loss does not use are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from kitchen.ports.types import Datum

#: Per-position float inputs the built-in losses read (kept in float64 for exact loss math).
FLOAT_INPUTS = ("weights", "logprobs", "advantages")


@dataclass
class Batch:
    """A right-padded batch ready for one forward pass."""

    input_ids: torch.Tensor  # [B, T] int64
    attention_mask: torch.Tensor  # [B, T] int64, 1 = real token
    targets: torch.Tensor  # [B, T] int64, 0 at padding
    mask: torch.Tensor  # [B, T] bool, True = real position
    lengths: list[int]
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # [B, T] float64
    #: Packing hook: explicit positions for several sequences in one row (None = 0..n-1).
    position_ids: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)


def collate(
    data: Sequence[Datum], *, vocab_size: int, device: torch.device, pad_id: int = 0
) -> Batch:
    """Right-pad ``data`` into a :class:`Batch`; token ids are checked against the vocab."""
    lengths = [d.model_input.length for d in data]
    width = max(lengths)
    rows = len(data)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    targets = torch.zeros((rows, width), dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.bool)
    present = [k for k in FLOAT_INPUTS if any(k in d.loss_fn_inputs for d in data)]
    inputs = {k: torch.zeros((rows, width), dtype=torch.float64) for k in present}
    for i, (datum, n) in enumerate(zip(data, lengths, strict=True)):
        toks = datum.model_input.to_ints()
        tgt = datum.loss_fn_inputs["target_tokens"].data
        for what, ids in (("model_input", toks), ("target_tokens", tgt)):
            bad = [t for t in ids if not 0 <= int(t) < vocab_size]
            if bad:
                raise ValueError(
                    f"datum {i}: {what} has token id {bad[0]} outside the model's "
                    f"vocabulary [0, {vocab_size})"
                )
        input_ids[i, :n] = torch.tensor(toks, dtype=torch.long)
        targets[i, :n] = torch.tensor(tgt, dtype=torch.long)
        mask[i, :n] = True
        for k in present:
            if k in datum.loss_fn_inputs:
                inputs[k][i, :n] = torch.tensor(datum.loss_fn_inputs[k].data, dtype=torch.float64)
    return Batch(
        input_ids=input_ids.to(device),
        attention_mask=mask.long().to(device),
        targets=targets.to(device),
        mask=mask.to(device),
        lengths=lengths,
        inputs={k: v.to(device) for k, v in inputs.items()},
    )

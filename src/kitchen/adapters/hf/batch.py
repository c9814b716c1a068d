"""Datums → tensors: one right-padded row per datum, or padding-free packed rows.

:func:`collate` makes each datum one right-padded row. :func:`collate_packed_datums` packs
the datums of one call into as few rows as fit (best-fit decreasing, the same bins as
:mod:`kitchen.adapters.hf.packing`), with ``position_ids`` restarting at 0 for every datum
and a block-diagonal causal mask so no datum attends to another. Either way
``loss_fn_inputs`` tensors are aligned with the input tokens, padded with zeros, and a
boolean ``mask`` marks the real positions; inputs a loss does not use are ignored. A datum
already carries its own next-token ``target_tokens``, so packing only concatenates: no
target ever crosses a datum boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from kitchen.adapters.hf.device import loss_dtype
from kitchen.adapters.hf.packing import best_fit_decreasing, block_diagonal_attention_mask
from kitchen.ports.types import Datum

#: Per-position float inputs the built-in losses read (kept in float64 for exact loss math).
FLOAT_INPUTS = ("weights", "logprobs", "advantages", "sequence_ratio_mask")


@dataclass
class Batch:
    """A batch ready for one forward pass."""

    input_ids: torch.Tensor  # [B, T] int64
    #: [B, T] int64 (1 = real token), a 4D additive mask [B, 1, T, T] (packed, sdpa/eager),
    #: or None (packed with flash-attention varlen: position_ids alone delimit samples).
    attention_mask: torch.Tensor | None
    targets: torch.Tensor  # [B, T] int64, 0 at padding
    mask: torch.Tensor  # [B, T] bool, True = real position
    lengths: list[int]  # per datum, in call order
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # [B, T] float64
    #: Packing: explicit positions for several sequences in one row (None = 0..n-1).
    position_ids: torch.Tensor | None = None
    #: Packing: where datum ``i`` lives, ``(row, offset, length)``; None = row ``i`` at 0.
    segments: list[tuple[int, int, int]] | None = None

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)

    def datum_slices(self) -> list[tuple[int, int, int]]:
        """``(row, offset, length)`` of every datum, in call order."""
        if self.segments is not None:
            return self.segments
        return [(i, 0, n) for i, n in enumerate(self.lengths)]


def _check_vocab(i: int, toks: Sequence[float], tgt: Sequence[float], vocab_size: int) -> None:
    for what, ids in (("model_input", toks), ("target_tokens", tgt)):
        bad = [t for t in ids if not 0 <= int(t) < vocab_size]
        if bad:
            raise ValueError(
                f"datum {i}: {what} has token id {bad[0]} outside the model's "
                f"vocabulary [0, {vocab_size})"
            )


def _fill(
    data: Sequence[Datum],
    placement: Sequence[tuple[int, int, int]],
    rows: int,
    width: int,
    vocab_size: int,
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Write every datum at its ``(row, offset, length)``; returns ids, targets, mask, inputs."""
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    targets = torch.zeros((rows, width), dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.bool)
    present = [k for k in FLOAT_INPUTS if any(k in d.loss_fn_inputs for d in data)]
    inputs = {k: torch.zeros((rows, width), dtype=torch.float64) for k in present}
    for i, (datum, (r, a, n)) in enumerate(zip(data, placement, strict=True)):
        toks = datum.model_input.to_ints()
        tgt = datum.loss_fn_inputs["target_tokens"].data
        _check_vocab(i, toks, tgt, vocab_size)
        input_ids[r, a : a + n] = torch.tensor(toks, dtype=torch.long)
        targets[r, a : a + n] = torch.tensor(tgt, dtype=torch.long)
        mask[r, a : a + n] = True
        for k in present:
            if k in datum.loss_fn_inputs:
                inputs[k][r, a : a + n] = torch.tensor(
                    datum.loss_fn_inputs[k].data, dtype=torch.float64
                )
    return input_ids, targets, mask, inputs


def collate(
    data: Sequence[Datum], *, vocab_size: int, device: torch.device, pad_id: int = 0
) -> Batch:
    """Right-pad ``data`` into a :class:`Batch`; token ids are checked against the vocab."""
    lengths = [d.model_input.length for d in data]
    placement = [(i, 0, n) for i, n in enumerate(lengths)]
    input_ids, targets, mask, inputs = _fill(
        data, placement, len(data), max(lengths), vocab_size, pad_id
    )
    return Batch(
        input_ids=input_ids.to(device),
        attention_mask=mask.long().to(device),
        targets=targets.to(device),
        mask=mask.to(device),
        lengths=lengths,
        inputs={k: v.to(device, loss_dtype(device)) for k, v in inputs.items()},
    )


def collate_packed_datums(
    data: Sequence[Datum],
    *,
    vocab_size: int,
    device: torch.device,
    capacity: int | None = None,
    varlen: bool = False,
    mask_dtype: torch.dtype = torch.float32,
    pad_id: int = 0,
) -> Batch:
    """Pack ``data`` padding-free into rows of at most ``capacity`` tokens.

    ``capacity`` defaults to the longest datum, so a packed batch is never wider than the
    padded one and holds at most as many rows; a larger value packs tighter. Rows are
    right-padded to the longest row; pad positions get position id 0, weight 0 and (in the
    4D mask) attend only to themselves. ``varlen=True`` (flash attention) puts every datum
    in one row and passes no mask: transformers derives the varlen ``cu_seqlens`` from the
    ``position_ids`` restarts.
    """
    lengths = [d.model_input.length for d in data]
    if varlen:
        bins = [list(range(len(data)))]
    else:
        cap = max(lengths) if capacity is None else max(int(capacity), max(lengths))
        bins = best_fit_decreasing(lengths, cap)
    placement: list[tuple[int, int, int]] = [(0, 0, 0)] * len(data)
    row_lens: list[list[int]] = []
    for r, members in enumerate(bins):
        offset = 0
        seq_lens = []
        for i in members:
            placement[i] = (r, offset, lengths[i])
            offset += lengths[i]
            seq_lens.append(lengths[i])
        row_lens.append(seq_lens)
    width = max(sum(s) for s in row_lens)
    input_ids, targets, mask, inputs = _fill(data, placement, len(bins), width, vocab_size, pad_id)
    position_ids = torch.zeros((len(bins), width), dtype=torch.long)
    for r, a, n in placement:
        position_ids[r, a : a + n] = torch.arange(n)
    attention: torch.Tensor | None = None
    if not varlen:
        attention = torch.cat(
            [
                block_diagonal_attention_mask(s, total_length=width, dtype=mask_dtype)
                for s in row_lens
            ],
            dim=0,
        ).to(device)
    return Batch(
        input_ids=input_ids.to(device),
        attention_mask=attention,
        targets=targets.to(device),
        mask=mask.to(device),
        lengths=lengths,
        inputs={k: v.to(device, loss_dtype(device)) for k, v in inputs.items()},
        position_ids=position_ids.to(device),
        segments=placement,
    )

"""Padding-free sequence packing: best-fit-decreasing bins, per-sample positions, masks.

Many short samples are packed into rows of at most ``max_length`` tokens so no compute is
spent on padding. Each :class:`PackedRow` holds the concatenated ``input_ids`` and
``weights``, ``position_ids`` that restart at 0 for each sample, and ``seq_lens`` /
``cu_seqlens`` (the cumulative boundaries ``[0, l0, l0+l1, ...]`` flash-attention's varlen
kernels take).

How a trainer uses a packed row (one sample must never attend to another):

- ``flash_attention_2`` / ``flash_attention_3``: pass ``position_ids``; transformers
  detects the restarts and calls the varlen kernel with these ``cu_seqlens``
  (``DataCollatorWithFlattening`` does the same), no mask needed.
- ``sdpa`` / ``eager``: ``position_ids`` alone fix RoPE but *not* attention, which still
  crosses sample boundaries unless told otherwise. Pass
  ``attention_mask=block_diagonal_attention_mask(row.seq_lens)``: a 4D additive float mask
  ``(1, 1, T, T)``, 0 where a query may attend (causal, same sample) and ``-inf``
  elsewhere; transformers uses a 4D mask as given. ``collate_packed`` batches rows this
  way (padding rows to the longest; pad positions attend only to themselves and have
  weight 0). ``tests/hf/test_packing.py`` proves a tiny Llama gives the same per-token
  logits for a packed row as for each sample run alone.
- Loss: a sample's last token must not predict the next sample's first token. Use
  :func:`next_token_targets`, which shifts targets *within* each sample and gives the
  last position of every sample weight 0.

Sequences longer than ``max_length`` are truncated (keeping the first ``max_length``
tokens) with a counted warning, or raise with ``on_overflow="error"``; never silently.
Everything but the two torch helpers is pure Python.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kitchen.errors import DataError
from kitchen.telemetry.logging import default_logger

OnOverflow = Literal["truncate", "error"]


def _log() -> Any:
    """Resolved per call, so an application's later structlog setup is honoured."""
    return default_logger("kitchen.hf.packing")


@dataclass(frozen=True)
class PackedRow:
    """One packed row: samples ``sample_indices`` concatenated in that order."""

    input_ids: tuple[int, ...]
    weights: tuple[float, ...]
    position_ids: tuple[int, ...]
    seq_lens: tuple[int, ...]
    sample_indices: tuple[int, ...]

    @property
    def cu_seqlens(self) -> tuple[int, ...]:
        out = [0]
        for n in self.seq_lens:
            out.append(out[-1] + n)
        return tuple(out)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class PackResult:
    rows: list[PackedRow]
    max_length: int
    #: How many input sequences were cut to ``max_length``.
    truncated: int = 0
    #: Tokens removed by truncation.
    truncated_tokens: int = 0

    @property
    def num_tokens(self) -> int:
        return sum(len(r) for r in self.rows)

    @property
    def efficiency(self) -> float:
        """Fraction of ``len(rows) * max_length`` slots holding real tokens."""
        return self.num_tokens / (len(self.rows) * self.max_length) if self.rows else 1.0


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bin indices of ``lengths`` into bins of ``capacity`` by best-fit decreasing.

    Items are taken longest first (ties by index, so the result is deterministic) and
    each goes into the open bin with the least room that still fits it, else a new bin.
    Within a bin, indices keep the order they were placed in. O(n log n) lookups.
    """
    if capacity <= 0:
        raise ValueError(f"capacity must be positive, got {capacity}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    # Sorted (remaining room, bin id) of open bins.
    room: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        if n > capacity or n <= 0:
            raise ValueError(f"item {i} has length {n}; it must be in 1..{capacity}")
        j = bisect.bisect_left(room, (n, -1))
        if j == len(room):
            bins.append([i])
            left, b = capacity - n, len(bins) - 1
        else:
            left, b = room.pop(j)
            bins[b].append(i)
            left -= n
        if left > 0:
            bisect.insort(room, (left, b))
    return bins


def pack_sequences(
    sequences: Iterable[Any],
    max_length: int,
    *,
    on_overflow: OnOverflow = "truncate",
    source: str = "<sequences>",
) -> PackResult:
    """Pack samples into rows of at most ``max_length`` tokens.

    A sample is a ``(tokens, weights)`` tuple, a :class:`~kitchen.ports.RenderedChat`, or a
    bare token list (every weight 1).

    Rows come out in bin-creation order (the first holds the longest sample); within a row
    samples keep their placement order. ``sample_indices`` maps back to the input.
    """
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    if on_overflow not in ("truncate", "error"):
        raise ValueError(f"on_overflow must be 'truncate' or 'error', got {on_overflow!r}")
    toks: list[list[int]] = []
    wts: list[list[float]] = []
    truncated = truncated_tokens = 0
    for i, item in enumerate(sequences):
        if hasattr(item, "tokens") and hasattr(item, "weights"):  # a RenderedChat
            t, w = list(item.tokens), [float(x) for x in item.weights]
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Sequence):
            t, w = [int(x) for x in item[0]], [float(x) for x in item[1]]
        else:
            t = [int(x) for x in item]
            w = [1.0] * len(t)
        if len(t) != len(w):
            raise DataError(
                source, i, "weights", f"has {len(w)} entries for {len(t)} tokens; align them"
            )
        if not t:
            raise DataError(source, i, "tokens", "is empty; drop empty samples before packing")
        if len(t) > max_length:
            if on_overflow == "error":
                raise DataError(
                    source,
                    i,
                    "tokens",
                    f"has {len(t)} tokens, more than max_length={max_length}; raise "
                    "max_length, split the sample, or pack with on_overflow='truncate'",
                )
            truncated += 1
            truncated_tokens += len(t) - max_length
            t, w = t[:max_length], w[:max_length]
        toks.append(t)
        wts.append(w)
    if truncated:
        _log().warning(
            "packing truncated sequences",
            source=source,
            truncated=truncated,
            truncated_tokens=truncated_tokens,
            max_length=max_length,
        )
    rows = []
    for members in best_fit_decreasing([len(t) for t in toks], max_length):
        ids: list[int] = []
        weights: list[float] = []
        pos: list[int] = []
        for i in members:
            ids += toks[i]
            weights += wts[i]
            pos += range(len(toks[i]))
        rows.append(
            PackedRow(
                tuple(ids),
                tuple(weights),
                tuple(pos),
                tuple(len(toks[i]) for i in members),
                tuple(members),
            )
        )
    return PackResult(rows, max_length, truncated, truncated_tokens)


def next_token_targets(row: PackedRow, *, fill: int = 0) -> tuple[list[int], list[float]]:
    """Targets and weights for next-token loss on a packed row, one per position.

    Position ``t`` predicts ``input_ids[t+1]`` with weight ``weights[t+1]`` when both are in
    the same sample; the last position of every sample gets target ``fill`` and weight 0.
    """
    targets: list[int] = []
    tw: list[float] = []
    start = 0
    for n in row.seq_lens:
        targets += row.input_ids[start + 1 : start + n]
        tw += row.weights[start + 1 : start + n]
        targets.append(fill)
        tw.append(0.0)
        start += n
    return targets, tw


def block_diagonal_attention_mask(
    seq_lens: Sequence[int],
    *,
    total_length: int | None = None,
    dtype: Any = None,
    device: Any = None,
) -> Any:
    """A ``(1, 1, T, T)`` additive mask: causal within each sample, ``-inf`` across.

    ``T = total_length`` (default ``sum(seq_lens)``); positions past the samples are padding
    and attend only to themselves (so softmax never sees an all ``-inf`` row).
    """
    import torch

    dtype = dtype or torch.float32
    used = sum(seq_lens)
    total = used if total_length is None else total_length
    if total < used:
        raise ValueError(f"total_length={total} is shorter than the samples ({used} tokens)")
    seg = torch.empty(total, dtype=torch.long, device=device)
    start = 0
    for k, n in enumerate(seq_lens):
        seg[start : start + n] = k
        start += n
    if total > used:  # each pad position is its own segment
        seg[used:] = torch.arange(len(seq_lens), len(seq_lens) + total - used, device=device)
    idx = torch.arange(total, device=device)
    allowed = (seg[:, None] == seg[None, :]) & (idx[None, :] <= idx[:, None])
    mask = torch.zeros(total, total, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, float("-inf"))
    return mask[None, None]


def collate_packed(
    rows: Sequence[PackedRow], *, pad_token_id: int = 0, pad_to: int | None = None
) -> dict[str, Any]:
    """Batch packed rows as tensors for an sdpa/eager model.

    Returns ``input_ids``, ``position_ids``, ``attention_mask`` (4D block-diagonal,
    ``(B, 1, T, T)``), ``labels`` and ``label_weights`` (next-token targets within each
    sample, from :func:`next_token_targets`). Rows are right-padded to ``pad_to`` (default:
    the longest row); pad positions have weight 0 and position id 0.
    """
    import torch

    if not rows:
        raise ValueError("collate_packed needs at least one row")
    width = max(len(r) for r in rows) if pad_to is None else pad_to
    ids, pos, labels, lw, masks = [], [], [], [], []
    for r in rows:
        pad = width - len(r)
        if pad < 0:
            raise ValueError(f"row of {len(r)} tokens is longer than pad_to={width}")
        t, w = next_token_targets(r, fill=pad_token_id)
        ids.append(list(r.input_ids) + [pad_token_id] * pad)
        pos.append(list(r.position_ids) + [0] * pad)
        labels.append(t + [pad_token_id] * pad)
        lw.append(w + [0.0] * pad)
        masks.append(block_diagonal_attention_mask(r.seq_lens, total_length=width))
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "position_ids": torch.tensor(pos, dtype=torch.long),
        "attention_mask": torch.cat(masks, dim=0),
        "labels": torch.tensor(labels, dtype=torch.long),
        "label_weights": torch.tensor(lw, dtype=torch.float32),
    }

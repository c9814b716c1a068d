"""Building next-token-prediction Datums from token ids and weights."""

from __future__ import annotations

from collections.abc import Sequence

from kitchen.ports.types import Datum, ModelInput, TensorData


def next_token_datum(
    tokens: Sequence[int], weights: Sequence[float], max_length: int
) -> Datum | None:
    """Input ``tokens[:-1]``, targets ``tokens[1:]``, weights aligned to the targets.

    Sequences are truncated to ``max_length`` tokens. Returns None when nothing is left
    to train on (fewer than two tokens, or all weights zero after truncation).
    """
    tokens = list(tokens[:max_length])
    weights = list(weights[:max_length])
    if len(tokens) < 2:
        return None
    target_w = weights[1:]
    if not any(target_w):
        return None
    return Datum(
        ModelInput.from_ints(tokens[:-1]),
        {
            "target_tokens": TensorData(tuple(tokens[1:]), "int64"),
            "weights": TensorData(tuple(target_w), "float32"),
        },
    )


def scale_weights(datums: Sequence[Datum], scale: float) -> list[Datum]:
    """Multiply every datum's weights by ``scale`` (the sum-loss becomes a mean when
    ``scale = 1 / total weight``)."""
    out = []
    for d in datums:
        w = d.loss_fn_inputs["weights"]
        inputs = dict(d.loss_fn_inputs)
        inputs["weights"] = TensorData(tuple(x * scale for x in w.data), "float32", w.shape)
        out.append(Datum(d.model_input, inputs))
    return out


def total_weight(datums: Sequence[Datum]) -> float:
    return float(sum(sum(d.loss_fn_inputs["weights"].data) for d in datums))

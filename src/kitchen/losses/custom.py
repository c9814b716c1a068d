"""Custom losses on any TrainingClient, through ``forward`` + ``cross_entropy``.

A loss ``L`` that is a function of per-token logprobs ``logp_i`` has gradient
``∇L = Σ_i (dL/dlogp_i)·∇logp_i``. ``cross_entropy`` with weights ``w_i`` has loss
``-Σ w_i·logp_i`` and gradient ``-Σ w_i·∇logp_i``, so ``w_i = -dL/dlogp_i`` makes its gradient
equal ``∇L``. That is Tinker's ``forward_backward_custom``, done here with port primitives, so
it works on noop, hf and remote backends alike (negative weights are allowed).

The two calls must see the same weights: :func:`custom_forward` must be submitted after the
previous ``optim_step`` and :func:`custom_backward` before the next one. Because a
TrainingClient runs calls in submission order this holds as long as nothing submits an
``optim_step`` in between. The ``loss:sum`` that ``forward_backward`` reports is then the
value of the *surrogate* ``-Σ w·logp``, not of ``L``; workflows log ``L`` themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kitchen.ports.futures import Future
from kitchen.ports.training import TrainingClient
from kitchen.ports.types import Datum, ForwardBackwardOutput, TensorData

#: ``loss_fn(logprobs) -> (loss, dL/dlogprobs, metrics)``; one list per datum, aligned with
#: ``target_tokens``.
LogprobLoss = Callable[[list[list[float]]], tuple[float, list[list[float]], Mapping[str, float]]]


def with_weights(datum: Datum, weights: Sequence[float]) -> Datum:
    """``datum`` with ``weights`` set (and only the ``cross_entropy`` inputs kept)."""
    inputs: dict[str, TensorData] = {
        "target_tokens": datum.loss_fn_inputs["target_tokens"],
        "weights": TensorData(tuple(float(w) for w in weights), "float32"),
    }
    return Datum(datum.model_input, inputs)


def _zero_weights(datum: Datum) -> Datum:
    return with_weights(datum, [0.0] * datum.model_input.length)


def logprobs_of(output: ForwardBackwardOutput) -> list[list[float]]:
    """Per-datum per-position logprobs from a forward/forward_backward output."""
    return [list(o["logprobs"].data) for o in output.loss_fn_outputs]


def custom_forward(training: TrainingClient, datums: Sequence[Datum]) -> Future[Any]:
    """Submit the forward pass that yields the logprobs a custom loss needs."""
    return training.forward([_zero_weights(d) for d in datums], "cross_entropy")


def custom_backward(
    training: TrainingClient, datums: Sequence[Datum], grads: Sequence[Sequence[float]]
) -> Future[ForwardBackwardOutput]:
    """Submit ``cross_entropy`` with weights ``-grads`` (accumulates ``∇L``)."""
    if len(grads) != len(datums):
        raise ValueError(f"{len(grads)} gradient rows for {len(datums)} datums")
    out = []
    for d, g in zip(datums, grads, strict=True):
        if len(g) != d.model_input.length:
            raise ValueError(
                f"gradient row has {len(g)} entries but the datum has {d.model_input.length}"
            )
        out.append(with_weights(d, [-x for x in g]))
    return training.forward_backward(out, "cross_entropy")


@dataclass
class CustomLossResult:
    loss: float
    metrics: dict[str, float]
    logprobs: list[list[float]]
    #: The ``forward_backward`` future (gradients are accumulated once it resolves).
    future: Future[ForwardBackwardOutput]
    extra: dict[str, Any] = field(default_factory=dict)


def forward_backward_custom(
    training: TrainingClient, datums: Sequence[Datum], loss_fn: LogprobLoss
) -> CustomLossResult:
    """Forward, compute ``loss_fn`` on the logprobs, submit the backward; returns at once
    after the forward (the backward is a future)."""
    logprobs = logprobs_of(custom_forward(training, datums).result())
    loss, grads, metrics = loss_fn(logprobs)
    fut = custom_backward(training, datums, grads)
    return CustomLossResult(float(loss), dict(metrics), logprobs, fut)

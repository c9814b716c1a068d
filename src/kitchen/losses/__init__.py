"""Loss math for the RL, preference and distillation workflows, in plain Python.

Everything here is a function of per-token logprobs, so it runs on every TrainingClient:
:mod:`kitchen.losses.custom` turns a loss and its gradient with respect to the logprobs
into a ``cross_entropy`` call with weights ``-dL/dlogp`` (Tinker's ``forward_backward_custom``).
"""

from kitchen.losses.custom import (
    CustomLossResult,
    LogprobLoss,
    custom_backward,
    custom_forward,
    forward_backward_custom,
    logprobs_of,
    with_weights,
)
from kitchen.losses.divergences import (
    DIVERGENCES,
    DivergenceKind,
    divergence,
    k1,
    k2,
    k3,
    k3_grad,
    log_softmax,
)
from kitchen.losses.dpo import DPO_LOSS_TYPES, DPOLossType, DPOPair, dpo_batch, dpo_pair

__all__ = [
    "DIVERGENCES",
    "DPO_LOSS_TYPES",
    "CustomLossResult",
    "DPOLossType",
    "DPOPair",
    "DivergenceKind",
    "LogprobLoss",
    "custom_backward",
    "custom_forward",
    "divergence",
    "dpo_batch",
    "dpo_pair",
    "forward_backward_custom",
    "k1",
    "k2",
    "k3",
    "k3_grad",
    "log_softmax",
    "logprobs_of",
    "with_weights",
]

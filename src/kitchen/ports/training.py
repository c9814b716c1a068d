"""The training port: primitives, not a trainer (the shape of the Tinker API)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from kitchen.ports.futures import Future
from kitchen.ports.sampling import SamplingClient
from kitchen.ports.types import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    GetInfoResponse,
    LoadWeightsResponse,
    LossFnType,
    OptimStepResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
)


@runtime_checkable
class TrainingClient(Protocol):
    """A model being trained.

    Calls return futures and are executed in submission order, so a caller may submit
    step N+1 before awaiting step N.
    """

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> Future[ForwardBackwardOutput]:
        """Compute the loss and accumulate gradients for ``data``."""
        ...

    def forward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> Future[ForwardBackwardOutput]:
        """Compute the loss and logprobs without touching gradients."""
        ...

    def optim_step(self, adam_params: AdamParams) -> Future[OptimStepResponse]:
        """Apply accumulated gradients with AdamW, then clear them."""
        ...

    def save_state(
        self, name: str, user_metadata: Mapping[str, str] | None = None
    ) -> Future[SaveWeightsResponse]:
        """Persist weights and optimiser state; the response's path feeds ``load_state``."""
        ...

    def load_state(self, path: str) -> Future[LoadWeightsResponse]:
        """Restore weights and optimiser state saved by ``save_state``."""
        ...

    def save_weights_for_sampler(self, name: str) -> Future[SaveWeightsForSamplerResponse]:
        """Persist weights only, for a sampling client."""
        ...

    def save_weights_and_get_sampling_client(self, name: str) -> SamplingClient:
        """Snapshot the current weights and return a sampling client over them."""
        ...

    def get_info(self) -> GetInfoResponse:
        """Describe the model being trained."""
        ...

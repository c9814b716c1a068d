"""The remote ``SamplingClient`` (defined with the training client, which creates it)."""

from kitchen.adapters.remote.training import RemoteSamplingClient

__all__ = ["RemoteSamplingClient"]

"""The metrics port."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class MetricsStore(Protocol):
    """Receives scalar metrics keyed by step."""

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Record ``metrics`` at ``step``."""
        ...

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record run hyper-parameters once."""
        ...

    def history(self) -> list[dict[str, Any]]:
        """Everything logged so far, as ``{"step": s, **metrics}`` records, in order."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

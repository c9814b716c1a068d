"""The set of port instances a workflow runs against."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from kitchen.errors import UsageError
from kitchen.ports.blob import BlobStore
from kitchen.ports.dataset import DatasetStore
from kitchen.ports.hub import HubClient
from kitchen.ports.metrics import MetricsStore
from kitchen.ports.sampling import SamplingClient
from kitchen.ports.tokenizer import TokenizerClient
from kitchen.ports.training import TrainingClient


@dataclass
class Ports:
    """Port instances wired by the composition root (``kitchen.bootstrap``).

    Any may be ``None``; :meth:`require` gives a clear error when a stage needs a missing
    one. ``extra`` holds additional named ports (e.g. a ``teacher`` SamplingClient).
    """

    training: TrainingClient | None = None
    sampling: SamplingClient | None = None
    dataset: DatasetStore | None = None
    blob: BlobStore | None = None
    hub: HubClient | None = None
    metrics: MetricsStore | None = None
    tokenizer: TokenizerClient | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def require(self, name: str) -> Any:
        value = getattr(self, name, None) if name != "extra" else None
        if value is None:
            value = self.extra.get(name)
        if value is None:
            raise UsageError(
                f"this workflow needs a {name!r} port but none is wired; "
                "pick adapters that provide it (e.g. --adapters noop) or set ports.extra"
            )
        return value

    def names(self) -> list[str]:
        present = [f.name for f in fields(self) if f.name != "extra" and getattr(self, f.name)]
        return present + sorted(self.extra)

    def with_(self, **changes: Any) -> Ports:
        return replace(self, **changes)

    def close(self) -> list[BaseException]:
        """Close every port that has a ``close()`` (each instance once; ``metrics`` is left
        to the metrics recorder that writes to it). Stops adapter worker threads, releases
        models and ends remote sessions. Returns the errors raised, after trying them all."""
        seen: set[int] = set()
        errors: list[BaseException] = []
        candidates = [
            getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "metrics")
        ]
        for port in [*candidates, *self.extra.values()]:
            close = getattr(port, "close", None)
            if port is None or id(port) in seen or not callable(close):
                continue
            seen.add(id(port))
            try:
                close()
            except Exception as exc:  # one failing port must not keep the others open
                errors.append(exc)
        return errors

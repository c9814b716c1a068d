"""Importing optional dependencies with an install hint instead of a bare ImportError."""

from __future__ import annotations

import importlib
from typing import Any

from kitchen.errors import AdapterUnavailable

INSTALL_HINTS = {
    "hf": "pip install 'kitchen[hf]' -c constraints.txt",
    "remote": "pip install 'kitchen[remote]'",
    "server": "pip install 'kitchen[server,remote]'",
    "tensorboard": "pip install 'kitchen[tensorboard]'",
    "mlflow": "pip install 'kitchen[mlflow]'",
    "otel": "pip install 'kitchen[otel]'",
    "data": "pip install 'kitchen[data]'",
    "ray": "pip install 'kitchen[ray]'",
    "s3": "pip install 'kitchen[s3]'",
    "hub": "pip install 'kitchen[hub]'",
    "wandb": "pip install 'kitchen[wandb]'",
    "gguf": "pip install 'kitchen[gguf]'",
    "astgrep": "pip install 'kitchen[astgrep]'",
}


def require(module: str, extra: str) -> Any:
    """Import ``module``; if it (or a dependency) is missing, say which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(extra, f"pip install 'kitchen[{extra}]'")
        raise AdapterUnavailable(
            f"this needs the optional dependency {exc.name or exc!s} (extra {extra!r}); "
            f"install it with: {hint}"
        ) from None

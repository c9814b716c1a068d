"""``build_ports`` for ``--adapters remote``: training and sampling go to a Tinker API
(Tinker itself or a ``kitchen serve``); data, tokenizer, blobs and metrics stay local.

Config (``config.model``), each falling back to the environment:

=============  ===================  ==================================================
key            environment          meaning
=============  ===================  ==================================================
base_url       ``TINKER_BASE_URL``   e.g. ``http://127.0.0.1:8000`` for kitchen serve
api_key        ``TINKER_API_KEY``    the server's token (``tml-...``)
base_model     --                   model to fine-tune; default: the server's first
lora_rank      --                   LoRA rank (default 32)
tokenizer      --                   ``noop`` (default) or an HF tokenizer id/path
=============  ===================  ==================================================

Building the ports opens no connection: the SDK client is created on the first call.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from kitchen.adapters.remote.training import (
    RemoteConfig,
    RemoteSamplingClient,
    RemoteTrainingClient,
)
from kitchen.errors import ConfigError
from kitchen.ports.bundle import Ports

_KEYS = ("base_url", "api_key", "base_model", "lora_rank", "tokenizer", "vocab_size", "name")


def remote_config(config: Any) -> RemoteConfig:
    spec = dict(getattr(config, "model", None) or {})
    seed = getattr(config, "seed", None)
    rank = spec.get("lora_rank", (spec.get("lora") or {}).get("rank", 32))
    try:
        rank = int(rank)
    except (TypeError, ValueError):
        raise ConfigError("model.lora_rank", f"must be an integer, got {rank!r}") from None
    api_key = spec.get("api_key") or os.environ.get("TINKER_API_KEY")
    if api_key is not None and not str(api_key).startswith(("tml-", "eyJ")):
        raise ConfigError("model.api_key", "a Tinker API key starts with 'tml-'")
    return RemoteConfig(
        base_url=spec.get("base_url") or os.environ.get("TINKER_BASE_URL"),
        api_key=api_key,
        base_model=spec.get("base_model"),
        lora_rank=rank,
        seed=None if seed is None else int(seed),
    )


def _local(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _tokenizer(spec: dict[str, Any]) -> Any:
    name = spec.get("tokenizer", "noop")
    if name in (None, "noop"):
        cls = getattr(_local("kitchen.adapters.noop"), "NoopTokenizer", None)
        return None if cls is None else cls(vocab_size=int(spec.get("vocab_size", 512)))
    hf_tok = _local("kitchen.adapters.hf.tokenizer")
    if hf_tok is None:
        raise ConfigError("model.tokenizer", "an HF tokenizer needs the hf extra installed")
    return hf_tok.HfTokenizer.load(name)


def build_ports(config: Any, run: Any = None) -> Ports:
    rc = remote_config(config)
    training = RemoteTrainingClient(rc)
    sampling = RemoteSamplingClient.for_base_model(training.connection)
    spec = dict(getattr(config, "model", None) or {})
    noop = _local("kitchen.adapters.noop")

    def local(name: str) -> Any:
        cls = getattr(noop, name, None)
        return cls() if cls is not None else None

    return Ports(
        training=training,
        sampling=sampling,
        dataset=local("NoopDatasetStore"),
        blob=local("NoopBlobStore"),
        hub=local("NoopHubClient"),
        metrics=local("NoopMetricsStore"),
        tokenizer=_tokenizer(spec),
    )

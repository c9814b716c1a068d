"""What ``kitchen serve`` trains and samples with: kitchen port implementations.

The server only talks to the :class:`~kitchen.ports.TrainingClient` and
:class:`~kitchen.ports.SamplingClient` protocols. A backend says how to make them:

- ``hf``: the hf adapter (``--model-spec`` JSON, or a local model path), the real backend;
- ``noop``: the deterministic in-memory adapter, for tests and smoke runs;
- ``package.module:factory``: anything else; ``factory(model_spec, model_name)`` returns a
  :class:`Backend`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from kitchen.errors import UsageError
from kitchen.ports.sampling import SamplingClient
from kitchen.ports.training import TrainingClient


class Backend(Protocol):
    #: Model names (``base_model``) this server accepts.
    def model_names(self) -> list[str]: ...

    def create_training(
        self, *, base_model: str, lora_rank: int | None, seed: int | None, state_dir: Path
    ) -> TrainingClient: ...

    def sampling_for_base(self, base_model: str, state_dir: Path) -> SamplingClient: ...


def _kwargs_for(fn: Callable[..., Any], candidates: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``candidates`` that ``fn`` accepts (adapters differ in their knobs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return candidates
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return candidates
    return {k: v for k, v in candidates.items() if k in params and v is not None}


class _BaseBackend:
    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def model_names(self) -> list[str]:
        return [self.model_name]

    def check_model(self, base_model: str) -> None:
        if base_model not in self.model_names():
            raise ValueError(
                f"base_model {base_model!r} is not served here; this server serves "
                f"{', '.join(repr(m) for m in self.model_names())}"
            )

    def create_training(
        self, *, base_model: str, lora_rank: int | None, seed: int | None, state_dir: Path
    ) -> TrainingClient:
        raise NotImplementedError

    def sampling_for_base(self, base_model: str, state_dir: Path) -> SamplingClient:
        # A fresh (untrained) model snapshot is exactly the base model's sampler.
        client = self.create_training(
            base_model=base_model, lora_rank=None, seed=0, state_dir=state_dir
        )
        return client.save_weights_and_get_sampling_client("base")


class NoopBackend(_BaseBackend):
    def __init__(self, spec: dict[str, Any], model_name: str | None) -> None:
        super().__init__(model_name or str(spec.get("name", "noop-tiny")))
        self.spec = spec
        vocab = spec.get("vocab_size", 512)
        if not isinstance(vocab, int) or isinstance(vocab, bool) or not 2 <= vocab <= 1 << 20:
            raise UsageError(
                f"--model-spec vocab_size must be an integer in [2, 2**20], got {vocab!r}"
            )
        self.vocab_size = vocab

    def create_training(
        self, *, base_model: str, lora_rank: int | None, seed: int | None, state_dir: Path
    ) -> TrainingClient:
        self.check_model(base_model)
        noop = importlib.import_module("kitchen.adapters.noop")
        cls = noop.NoopTrainingClient
        kwargs = _kwargs_for(
            cls,
            {
                "model_name": base_model,
                "vocab_size": self.vocab_size,
                "seed": int(seed or 0),
                "lora_rank": lora_rank,
                "state_dir": str(state_dir),
            },
        )
        client: TrainingClient = cls(**kwargs)
        return client


class HfBackend(_BaseBackend):
    """The hf adapter. ``spec`` is a ModelSpec plus optional server keys:

    - ``"tokenizer"`` (a local directory): the model's tokenizer, used for string stop
      sequences. Without it, the tokenizer saved next to a ``path`` model is used.
    - ``"share_base"`` (default true): LoRA sessions (and the samplers made from them)
      share one copy of the base model, each with its own adapter and optimizer
      (:mod:`kitchen.adapters.hf.shared_base`). Full and QLoRA sessions, and FSDP, always
      load their own copy.
    """

    def __init__(self, spec: dict[str, Any], model_name: str | None) -> None:
        spec = dict(spec)
        self.share_base = bool(spec.pop("share_base", True))
        self._shared: Any = None
        self._shared_lock = threading.Lock()
        self.tokenizer_dir: str | None = spec.pop("tokenizer", None)
        if self.tokenizer_dir is None and spec.get("path") and _has_tokenizer(spec["path"]):
            self.tokenizer_dir = str(spec["path"])
        name = model_name or spec.get("name") or spec.get("model_name") or spec.get("path")
        super().__init__(str(name or "kitchen-hf"))
        self.spec = spec
        self._check_at_start()
        self._tokenizer: Any = None
        self._tokenizer_lock = threading.Lock()

    def tokenizer(self) -> Any:
        """The served model's tokenizer (loaded once, from local files only), or ``None``."""
        if self.tokenizer_dir is None:
            return None
        with self._tokenizer_lock:
            if self._tokenizer is None:
                tok = importlib.import_module("kitchen.adapters.hf.tokenizer")
                self._tokenizer = tok.HfTokenizer.load(self.tokenizer_dir)
            return self._tokenizer

    def _check_at_start(self) -> None:
        """Fail at start, not at the first request: the spec validates, the path exists."""
        from kitchen.config import validate

        ms = importlib.import_module("kitchen.adapters.hf.model_spec")
        try:
            validate(ms.ModelSpec, self.spec)
        except UsageError as exc:
            raise UsageError(f"--model-spec/--model: {exc}") from None
        path = self.spec.get("path")
        if path and "://" not in str(path) and not Path(str(path)).exists():
            raise UsageError(
                f"--model {path}: no such directory; pass a local model directory "
                "(kitchen serve never downloads)"
            )

    def _spec(self, lora_rank: int | None, seed: int | None) -> Any:
        ms = importlib.import_module("kitchen.adapters.hf.model_spec")
        data = dict(self.spec)
        if lora_rank is not None and data.get("mode", "lora") != "full":
            data["lora"] = {**dict(data.get("lora") or {}), "rank": int(lora_rank)}
        if seed is not None:
            data["seed"] = int(seed)
        return ms.ModelSpec.model_validate(data)

    def create_training(
        self, *, base_model: str, lora_rank: int | None, seed: int | None, state_dir: Path
    ) -> TrainingClient:
        self.check_model(base_model)
        training = importlib.import_module("kitchen.adapters.hf.training")
        cls = training.HfTrainingClient
        spec = self._spec(lora_rank, seed)
        kwargs = _kwargs_for(
            cls,
            {
                "state_dir": str(state_dir),
                "seed": seed,
                "tokenizer": self.tokenizer(),
                "shared": self.shared_base(spec),
                # Concurrent asample requests to one sampler decode in one padded batch.
                "sampler_class": importlib.import_module(
                    "kitchen.adapters.hf.batched_sampling"
                ).BatchedHfSamplingClient,
            },
        )
        client: TrainingClient = cls(spec, **kwargs)
        return client

    def shared_base(self, spec: Any) -> Any:
        """The one base every LoRA session of this served model trains on (None when
        sessions keep their own copy: sharing off, full / QLoRA / FSDP)."""
        if not self.share_base or spec.mode != "lora" or spec.parallel == "fsdp":
            return None
        with self._shared_lock:
            if self._shared is None:
                sb = importlib.import_module("kitchen.adapters.hf.shared_base")
                self._shared = sb.SharedBase(self._spec(None, None))
            return self._shared

    def sampling_for_base(self, base_model: str, state_dir: Path) -> SamplingClient:
        shared = self.shared_base(self._spec(None, 0))
        if shared is not None:
            # The shared base itself ("__base__" rows in the mixed-adapter batch): no copy.
            self.check_model(base_model)
            from kitchen.adapters.hf.adapter_sampling import SharedAdapterSamplingClient
            from kitchen.adapters.hf.shared_base import BASE

            base: SamplingClient = SharedAdapterSamplingClient(
                shared,
                BASE,
                name="base",
                seed=0,
                tokenizer=self.tokenizer(),
                logprob_chunk_size=shared.spec.logprob_chunk_size,
            )
            return base
        client = self.create_training(
            base_model=base_model, lora_rank=None, seed=0, state_dir=state_dir
        )
        sampler = client.save_weights_and_get_sampling_client("base")
        # Runs after the snapshot on the same worker: a shared base drops the temporary
        # adapter, a private copy stops its thread; the snapshot keeps what it needs.
        close = getattr(client, "close", None)
        if close is not None:
            close()
        return sampler


def _has_tokenizer(path: str) -> bool:
    p = Path(path)
    return (p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file()


def _parse_spec(model_spec: str | None, model: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if model_spec:
        text = model_spec
        if not model_spec.lstrip().startswith("{"):
            from kitchen.io import read_text_bounded

            text = read_text_bounded(model_spec, what="--model-spec file")
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--model-spec is not valid JSON (or a JSON file): {exc}") from exc
        if not isinstance(loaded, dict):
            raise UsageError("--model-spec must be a JSON object")
        spec = loaded
    if model:
        spec.setdefault("path", model)
    return spec


def load_backend(
    name: str,
    *,
    model_spec: str | None = None,
    model: str | None = None,
    model_name: str | None = None,
) -> Backend:
    spec = _parse_spec(model_spec, model)
    if name == "noop":
        return NoopBackend(spec, model_name)
    if name == "hf":
        if not spec:
            raise UsageError("--backend hf needs --model-spec JSON or --model PATH")
        return HfBackend(spec, model_name)
    if ":" in name:
        mod_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UsageError(
                f"--backend {name!r}: cannot import {mod_name}:{attr} ({exc})"
            ) from exc
        if not callable(factory):
            raise UsageError(f"--backend {name!r}: {attr} is not callable")
        try:
            backend: Backend = factory(spec, model_name)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(
                f"--backend {name!r}: the factory failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(getattr(backend, "model_names", None)):
            raise UsageError(f"--backend {name!r}: the factory did not return a Backend")
        return backend
    raise UsageError(f"unknown --backend {name!r}; choose hf, noop or package.module:factory")

"""One frozen base model shared by many LoRA training clients (peft multi-adapter).

``kitchen serve`` gives every LoRA training session of a served model a *tenant* of one
:class:`SharedBase`: the base weights exist once, each tenant owns a peft adapter (and,
in its :class:`~kitchen.adapters.hf.training.HfTrainingClient`, its own optimizer state).
Every tenant's calls run on the base's single worker thread, which activates the tenant's
adapter first, so calls of different tenants interleave freely and each sees exactly
what it would see alone: only the active adapter takes part in a forward pass, so only
its parameters get gradients, and a tenant's LoRA init uses its own seed.

Parameter names a tenant reports (checkpoints, ``trainable()``) use peft's ``default``
adapter name, so its checkpoints load into any other tenant or a standalone client.
Full fine-tuning and QLoRA clients are not shared: each keeps its own model.

Samplers live on the same base. A tenant's sampler (``save_weights_and_get_sampling_client``)
is a frozen copy of its adapter as of the call, added as another named adapter
(``sampler<N>``); the base model's sampler uses peft's ``"__base__"`` (no adapter). No sampler
holds a model of its own: every one of them hands its requests to the base's one
:attr:`SharedBase.batcher`, which decodes concurrent requests of all adapters in one padded
batch (peft's mixed-adapter forward, ``adapter_names=[...]`` per row;
:mod:`kitchen.adapters.hf.adapter_sampling`).

Why nothing races: training and sampling both run on :attr:`SharedBase.worker`, one thread.
Sharing that thread is required, not a convenience: peft's mixed-adapter forward works by
registering forward pre-hooks on every LoRA layer of the shared model for the duration of
the call (a concurrent training forward would pick up the sampler's ``adapter_names``) and
refuses a model in training mode; ``set_adapter`` also flips ``requires_grad`` model-wide.
So a decode step and a training step never overlap; a batch of samples is one job between
training jobs, and every training job activates its own adapter first, whatever a sampling
job left active.
"""

from __future__ import annotations

import copy
import shutil
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kitchen.adapters.hf.model_spec import (
    LoadedModel,
    ModelSpec,
    load_base,
    lora_config,
    placement,
    seeded,
)
from kitchen.ports.futures import SerialWorker

DEFAULT = "default"
#: peft's name for "no adapter" in a mixed-adapter batch: the base model's rows.
BASE = "__base__"
#: Adapters holding a sampler's frozen weights are named ``sampler<N>``.
SAMPLER_PREFIX = "sampler"


def canonical(name: str, adapter: str) -> str:
    """A tenant's parameter name under peft's ``default`` adapter name."""
    return name.replace(f".{adapter}.", f".{DEFAULT}.")


@dataclass
class TenantModel(LoadedModel):
    """The shared model seen by one tenant: ``trainable()`` is its adapter only."""

    adapter: str = DEFAULT

    def trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        marker = f".{self.adapter}."
        return [
            (canonical(n, self.adapter), p) for n, p in self.model.named_parameters() if marker in n
        ]


class SharedBase:
    """The base of one served model: loaded once (lazily, on :attr:`worker`), with one
    LoRA adapter per tenant. ``spec`` gives the base (its ``seed`` seeds a from-config
    base); each tenant's own spec gives its LoRA rank, alpha, targets and init seed."""

    def __init__(self, spec: ModelSpec, device: str | torch.device | None = None) -> None:
        if spec.mode != "lora" or spec.parallel == "fsdp":
            raise ValueError("only plain LoRA models (not full, qlora or fsdp) share a base")
        self.spec = spec
        # model.device resolved like every other hf model (device overrides spec.device).
        self.device = placement(spec, device).device
        self.worker = SerialWorker("kitchen-hf-shared")
        self._base: Any = None
        self._peft: Any = None
        self._vocab = 0
        self._count = 0
        self._lock = threading.Lock()
        self._batcher: Any = None

    @property
    def tenants(self) -> list[str]:
        """Training adapters currently held (worker thread only)."""
        return [
            a
            for a in (self._peft.peft_config if self._peft else {})
            if a != DEFAULT and not a.startswith(SAMPLER_PREFIX)
        ]

    @property
    def samplers(self) -> list[str]:
        """Sampler adapters currently held (worker thread only)."""
        return [
            a
            for a in (self._peft.peft_config if self._peft else {})
            if a.startswith(SAMPLER_PREFIX)
        ]

    def new_name(self, prefix: str = "tenant") -> str:
        with self._lock:
            self._count += 1
            return f"{prefix}{self._count}"

    @property
    def batcher(self) -> Any:
        """The one batcher that decodes every sampler's requests on this base."""
        with self._lock:
            if self._batcher is None:
                from kitchen.adapters.hf.adapter_sampling import MixedAdapterBatcher

                self._batcher = MixedAdapterBatcher(self)
            return self._batcher

    @property
    def peft(self) -> Any:
        """The shared peft model, loaded on first use (worker thread only). Loading it
        before any tenant exists (a base-model sampler) adds an unused ``default``
        adapter, since peft needs one."""
        if self._peft is None:
            self.add(DEFAULT, self.spec)
        return self._peft

    def add(self, name: str, spec: ModelSpec) -> TenantModel:
        """Create adapter ``name`` (initialised from ``spec.seed`` exactly as a standalone
        client's) and return the tenant's view. Worker thread only."""
        from peft import get_peft_model

        cfg = lora_config(spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if self._peft is None:
                self._base = load_base(self.spec, self.device)
                emb = self._base.get_input_embeddings()
                self._vocab = int(emb.num_embeddings)
                with seeded(spec.seed + 1, torch.device("cpu")):
                    self._peft = get_peft_model(self._base, cfg, adapter_name=name)
            else:
                with seeded(spec.seed + 1, torch.device("cpu")):
                    self._peft.add_adapter(name, cfg)
        self.activate(name)
        return TenantModel(
            model=self._peft, spec=spec, device=self.device, vocab_size=self._vocab, adapter=name
        )

    def activate(self, name: str) -> None:
        """Make ``name`` the adapter forward passes use (worker thread only)."""
        if self._peft.active_adapter != name:
            self._peft.set_adapter(name)

    def snapshot(self, source: str) -> str:
        """Add a frozen copy of adapter ``source``'s weights as they are now, as a new
        sampler adapter, and return its name (worker thread only). The base is not copied."""
        name = self.new_name(SAMPLER_PREFIX)
        peft = self._peft
        cfg = copy.deepcopy(peft.peft_config[source])
        # add_adapter initialises weights (overwritten below) from torch's global RNG; the
        # seeded block gives the RNG back untouched and keeps other threads' seeded loads
        # from interleaving. (peft's low_cpu_mem_usage would skip the init, but it patches
        # nn.Module process-wide, which breaks a model loading on another thread.)
        with warnings.catch_warnings(), seeded(0, self.device):
            warnings.simplefilter("ignore", FutureWarning)
            peft.add_adapter(name, cfg)
        params = dict(peft.named_parameters())
        src, dst = f".{source}.", f".{name}."
        with torch.no_grad():
            for n, p in params.items():
                if src in n:
                    params[n.replace(src, dst)].copy_(p)
        for n, p in params.items():
            if dst in n:
                p.requires_grad_(False)
        return name

    def remove(self, name: str) -> None:
        """Drop a tenant's adapter weights (worker thread only). The last adapter stays
        in place, unused, because peft needs one; it is replaced by the next tenant."""
        if self._peft is None or name not in self._peft.peft_config:
            return
        if len(self._peft.peft_config) > 1:
            active = self._peft.active_adapter
            with warnings.catch_warnings():  # "was active, now deleted": reactivated below
                warnings.simplefilter("ignore", UserWarning)
                self._peft.delete_adapter(name)
            if active != name and active in self._peft.peft_config:
                self.activate(active)

    def save_adapter(self, name: str, directory: Path) -> None:
        """Write tenant ``name``'s adapter as a standalone peft adapter directory."""
        sub = directory / ".adapter"
        self._peft.save_pretrained(str(sub), safe_serialization=True, selected_adapters=[name])
        src = sub / name if (sub / name).is_dir() else sub
        for f in src.iterdir():
            if f.is_file():
                shutil.move(str(f), str(directory / f.name))
        shutil.rmtree(sub, ignore_errors=True)
        # peft records the adapter's own name; a standalone load expects the default one.
        cfg = directory / "adapter_config.json"
        if cfg.is_file():
            import json

            data = json.loads(cfg.read_text(encoding="utf-8"))
            data.pop("adapter_name", None)
            cfg.write_text(json.dumps(data, indent=2), encoding="utf-8")


class TenantWorker:
    """A tenant's handle on the shared worker: every job runs with its adapter active."""

    def __init__(self, shared: SharedBase, prepare: Any) -> None:
        self._shared = shared
        self._prepare = prepare  # () -> adapter name; creates the adapter on first use
        self._closed = False

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise RuntimeError("this training client is closed")

        def job() -> Any:
            self._shared.activate(self._prepare())
            return fn(*args, **kwargs)

        return self._shared.worker.submit(job)

    def shutdown(self, wait: bool = True, release: Any = None) -> None:
        if self._closed:
            return
        fut = self._shared.worker.submit(release) if release is not None else None
        self._closed = True
        if wait and fut is not None:
            fut.result()

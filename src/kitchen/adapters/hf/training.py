"""``TrainingClient`` over a local transformers/peft model.

One :class:`~kitchen.ports.futures.SerialWorker` thread owns the model: every call is
queued on it and returns a future at once, so a workflow can submit ``forward_backward``
and ``optim_step`` for step N+1 while step N computes, and calls still run strictly in
submission order. The model loads lazily on that thread at first use (or on ``load()``).

**Packing** (``ModelSpec.packing`` or ``packing=``): ``forward_backward`` and ``forward`` pack
the call's datums padding-free into rows (best-fit decreasing, at most ``pack_length`` tokens,
default the longest datum) with ``position_ids`` restarting per datum and a block-diagonal
causal mask (sdpa/eager), or position ids alone with flash attention (varlen kernels). The
per-token logprobs, losses and gradients equal the unpacked path's to float rounding, and
``loss_fn_outputs`` still come back one per datum, in call order.

**Data parallel** (``WORLD_SIZE > 1`` under ``accelerate launch`` / ``torchrun``): see
:mod:`kitchen.adapters.hf.distributed`. Gradients are all-reduced with SUM at ``optim_step``,
``forward_backward`` metrics are summed over ranks, and only rank 0 writes checkpoints and
sampler weights.

**FSDP** (``ModelSpec.parallel="fsdp"``): the model is sharded with FSDP2 instead
(:mod:`kitchen.adapters.hf.fsdp`); gradients are reduce-scattered (SUM) during backward,
clipping uses the global norm, and every rank writes its shards of ``save_state`` into rank
0's state directory (:mod:`kitchen.adapters.hf.sharded_state`).
"""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from kitchen.adapters.hf import distributed as dist_mod
from kitchen.adapters.hf import fsdp
from kitchen.adapters.hf import sharded_state as sst
from kitchen.adapters.hf import state as st
from kitchen.adapters.hf.batch import Batch, collate, collate_packed_datums
from kitchen.adapters.hf.logprobs import token_logprobs
from kitchen.adapters.hf.losses import compute_loss
from kitchen.adapters.hf.model_spec import LoadedModel, ModelSpec, load_model, placement
from kitchen.adapters.hf.sampling import HfSamplingClient
from kitchen.adapters.hf.shared_base import SharedBase, TenantWorker
from kitchen.errors import CheckpointError, UsageError
from kitchen.io import atomic_write_json
from kitchen.ports import losses as ref
from kitchen.ports.futures import KFuture, SerialWorker
from kitchen.ports.types import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    GetInfoResponse,
    LoadWeightsResponse,
    LossFnType,
    ModelData,
    OptimStepResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
    TensorData,
)
from kitchen.ports.validation import validate_datums


class HfTrainingClient:
    """Trains a :class:`ModelSpec` model locally; implements ``kitchen.ports.TrainingClient``.

    ``state_dir`` receives ``save_state`` checkpoints and sampler weights (a fresh temporary
    directory when omitted). ``seed`` overrides ``spec.seed``. ``tokenizer`` (anything with
    ``decode``) is handed to sampling clients so they can honour string stop sequences.
    ``packing`` overrides ``spec.packing`` (see the module docstring). ``device`` overrides
    ``spec.device``; either is resolved by :func:`kitchen.adapters.hf.device.resolve_device`
    here, so a missing device fails at construction with an error naming ``model.device``.
    ``shared`` makes the client a tenant of a
    :class:`~kitchen.adapters.hf.shared_base.SharedBase` (one base model, an adapter per
    client). ``sampler_class`` builds the sampling clients it hands out (e.g.
    :class:`~kitchen.adapters.hf.batched_sampling.BatchedHfSamplingClient`).
    """

    def __init__(
        self,
        spec: ModelSpec | Mapping[str, Any],
        *,
        state_dir: str | None = None,
        device: str | None = None,
        seed: int | None = None,
        tokenizer: Any = None,
        packing: bool | None = None,
        shared: SharedBase | None = None,
        sampler_class: type[HfSamplingClient] = HfSamplingClient,
    ) -> None:
        spec = spec if isinstance(spec, ModelSpec) else ModelSpec.model_validate(dict(spec))
        if seed is not None:
            spec = spec.model_copy(update={"seed": int(seed)})
        if packing is not None:
            spec = spec.model_copy(update={"packing": bool(packing)})
        self.spec = spec
        self.placement = placement(spec, device)
        self.device = self.placement.device
        self._state_dir = Path(state_dir) if state_dir is not None else None
        #: A tenant of a shared base model (``kitchen serve``'s LoRA sessions), or None.
        self._shared = shared
        self._sampler_class = sampler_class
        self._adapter: str | None = None
        self._worker: Any = (
            SerialWorker("kitchen-hf-train")
            if shared is None
            else TenantWorker(shared, self._tenant_adapter)
        )
        self._loaded: LoadedModel | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._num_steps = 0
        self._tokenizer = tokenizer
        self._packing = spec.packing
        self._dp = dist_mod.detect()
        self._sharded = spec.parallel == "fsdp"
        if self._sharded:
            fsdp.check_launch(self._dp.world_size)
        #: Where every rank reads and writes sharded checkpoints: rank 0's state_dir.
        self._shared_state_dir: Path | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def load(self) -> KFuture[None]:
        """Load the model now (on the worker) instead of at the first call."""
        return self._worker.submit(self._load)

    def _load(self) -> None:
        self._ensure()

    def close(self) -> None:
        """Finish queued work and stop the worker thread (a tenant of a shared base
        releases its adapter instead; the base stays for the other tenants)."""
        if isinstance(self._worker, TenantWorker):
            self._worker.shutdown(wait=True, release=self._release_adapter)
        else:
            self._worker.shutdown(wait=True)

    def _saved_spec(self) -> ModelSpec:
        """The spec written next to weights, to rebuild the model from: a tenant's base is
        the shared one (its seed builds a from-config base), the rest is the tenant's."""
        if self._shared is None:
            return self.spec
        return self.spec.model_copy(update={"seed": self._shared.spec.seed})

    def _tenant_adapter(self) -> str:
        self._ensure()
        assert self._adapter is not None
        return self._adapter

    def _release_adapter(self) -> None:
        if self._shared is not None and self._adapter is not None:
            self._shared.remove(self._adapter)
        self._loaded = None

    @property
    def model(self) -> Any:
        """The live model (loads it if needed). Read it only between calls."""
        return self._worker.submit(lambda: self._ensure().model).result()

    @property
    def tokenizer_vocab_size(self) -> int:
        """Rows of the input embedding: the token ids this model accepts."""
        return self._worker.submit(lambda: self._ensure().vocab_size).result()

    @property
    def state_dir(self) -> Path:
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="kitchen-hf-state-"))
        return self._state_dir

    def _ensure(self) -> LoadedModel:
        if self._loaded is None and self._shared is not None:
            self._adapter = self._shared.new_name()
            self._loaded = self._shared.add(self._adapter, self.spec)
        if self._loaded is None:
            if self._dp.world_size > 1:
                self._dp = dist_mod.init_process_group(self.device.type)
                if self.device.type == "cuda" and self.device.index is None:
                    self.device = torch.device("cuda", self._dp.local_rank)
            lm = load_model(self.spec, self.device)
            if self._sharded:
                # No broadcast needed: the ranks' shards make up one model whatever they held.
                fsdp.shard_model(lm.model, self.device)
                self._shared_state_dir = Path(dist_mod.broadcast_str(str(self.state_dir)))
            elif self._dp.world_size > 1:
                dist_mod.broadcast_parameters([p for _, p in lm.trainable()])
            self._loaded = lm
        return self._loaded

    # --- packing / data parallel ----------------------------------------------------------

    @property
    def packing(self) -> bool:
        return self._packing

    def set_packing(self, enabled: bool) -> None:
        """Pack (or stop packing) every call submitted from now on."""
        self._worker.submit(setattr, self, "_packing", bool(enabled)).result()

    @property
    def data_parallel_rank(self) -> int:
        """This process's rank in a data-parallel job (0 when alone)."""
        return self._dp.rank

    @property
    def data_parallel_size(self) -> int:
        """Processes in the data-parallel job (1 when alone)."""
        return self._dp.world_size

    # --- forward / backward -----------------------------------------------------------

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> KFuture[ForwardBackwardOutput]:
        """Compute the loss on ``data`` and accumulate its gradients."""
        self._check(data, loss_fn, loss_fn_config)
        return self._worker.submit(self._run, list(data), loss_fn, loss_fn_config, True)

    def forward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> KFuture[ForwardBackwardOutput]:
        """Compute the loss and logprobs without gradients (eval mode)."""
        self._check(data, loss_fn, loss_fn_config)
        return self._worker.submit(self._run, list(data), loss_fn, loss_fn_config, False)

    def forward_with_adapter_disabled(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType = "cross_entropy",
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> KFuture[ForwardBackwardOutput]:
        """:meth:`forward` with the LoRA adapter switched off: the frozen base model's
        logprobs, e.g. DPO's reference (``reference="adapter_disabled"``) at no extra
        memory. Runs in submission order with the other calls, like ``forward``."""
        if not self.spec.is_lora:
            raise UsageError(
                f"forward_with_adapter_disabled needs a LoRA/QLoRA model; this one trains in "
                f"{self.spec.mode!r} mode. Use DPO reference='precomputed' or 'frozen_copy'"
            )
        self._check(data, loss_fn, loss_fn_config)
        return self._worker.submit(self._run_base, list(data), loss_fn, loss_fn_config)

    def _run_base(
        self, data: list[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None
    ) -> ForwardBackwardOutput:
        lm = self._ensure()
        with lm.model.disable_adapter():  # peft: the adapter layers pass the input through
            return self._run(data, loss_fn, loss_fn_config, False)

    def _check(
        self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None
    ) -> None:
        # Fail in the caller's thread, before anything is queued.
        if not data and self._dp.world_size > 1 and loss_fn in ref.REQUIRED_INPUTS:
            # A rank may hold an empty shard of a small global batch; it still has to take
            # part in the step's collectives.
            return
        validate_datums(data, loss_fn)
        ref.check_config(loss_fn, loss_fn_config)

    def _logprobs(self, lm: LoadedModel, batch: Batch) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": batch.input_ids}
        if batch.attention_mask is not None:
            kwargs["attention_mask"] = batch.attention_mask
        if batch.position_ids is not None:
            kwargs["position_ids"] = batch.position_ids
        # Chunked LM head over the real positions only: no [B, T, vocab] logits (logprobs.py).
        return token_logprobs(
            lm.model, kwargs, batch.targets, batch.mask, self.spec.logprob_chunk_size
        )

    def _run(
        self,
        data: list[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float] | None,
        backward: bool,
    ) -> ForwardBackwardOutput:
        lm = self._ensure()
        if not data:
            return self._empty_shard(loss_fn, backward)
        batch = self._collate(lm, data)
        if backward:
            lm.model.train()
            logp = self._logprobs(lm, batch)
            result = compute_loss(loss_fn, logp, batch, loss_fn_config)
            result.loss.backward()
        else:
            lm.model.eval()
            with torch.no_grad():
                logp = self._logprobs(lm, batch)
                result = compute_loss(loss_fn, logp, batch, loss_fn_config)
            if self._sharded:
                fsdp.reshard(lm.model)
        rows = logp.detach().float().cpu()
        outputs = tuple(
            {"logprobs": TensorData(tuple(rows[r, a : a + n].tolist()), "float32")}
            for r, a, n in batch.datum_slices()
        )
        metrics = result.metrics(batch.num_tokens)
        if backward and self._dp.world_size > 1:
            metrics = self._global_metrics(
                float(result.loss.detach()), result.denominator, batch.num_tokens
            )
        return ForwardBackwardOutput(
            loss_fn_output_type="ArrayRecord",
            loss_fn_outputs=outputs,
            metrics=metrics,
        )

    def _collate(self, lm: LoadedModel, data: list[Datum]) -> Batch:
        if not self._packing:
            return collate(data, vocab_size=lm.vocab_size, device=lm.device)
        attn = str(getattr(lm.model.config, "_attn_implementation", "") or "")
        return collate_packed_datums(
            data,
            vocab_size=lm.vocab_size,
            device=lm.device,
            capacity=self.spec.pack_length,
            varlen=attn.startswith("flash_attention"),
            mask_dtype=_activation_dtype(lm.model),
        )

    def _global_metrics(self, loss: float, denom: float, tokens: int) -> dict[str, float]:
        """``forward_backward`` metrics of the global batch: sums over ranks."""
        loss, denom, n = dist_mod.all_reduce_sum([loss, denom, float(tokens)])
        return {"loss:sum": loss, "loss:mean": loss / denom if denom else 0.0, "num_tokens": n}

    def _empty_shard(self, loss_fn: str, backward: bool) -> ForwardBackwardOutput:
        if self._sharded:
            lm = self._ensure()
            fsdp.run_dummy(lm.model, lm.device, backward)  # join the layers' collectives
        metrics = {"loss:sum": 0.0, "loss:mean": 0.0, "num_tokens": 0.0}
        if backward and self._dp.world_size > 1:
            metrics = self._global_metrics(0.0, 0.0, 0)
        return ForwardBackwardOutput(
            loss_fn_output_type="ArrayRecord", loss_fn_outputs=(), metrics=metrics
        )

    # --- optimiser ----------------------------------------------------------------------

    def optim_step(self, adam_params: AdamParams) -> KFuture[OptimStepResponse]:
        """AdamW step on the accumulated gradients (clipped when asked), then zero them."""
        return self._worker.submit(self._optim_step, adam_params)

    def _make_optimizer(self, lm: LoadedModel, p: AdamParams) -> torch.optim.Optimizer:
        params = [param for _, param in lm.trainable()]
        return torch.optim.AdamW(
            params,
            lr=p.learning_rate,
            betas=(p.beta1, p.beta2),
            eps=p.eps,
            weight_decay=p.weight_decay,
        )

    def _optim_step(self, p: AdamParams) -> OptimStepResponse:
        lm = self._ensure()
        if self._optimizer is None:
            self._optimizer = self._make_optimizer(lm, p)
        opt = self._optimizer
        for group in opt.param_groups:
            # Hyper-parameters may change every step (schedules); apply them in place.
            group["lr"] = p.learning_rate
            group["betas"] = (p.beta1, p.beta2)
            group["eps"] = p.eps
            group["weight_decay"] = p.weight_decay
        if self._dp.world_size > 1 and not self._sharded:
            # The global objective is the sum over ranks' shards, so is its gradient.
            dist_mod.all_reduce_gradients([q for g in opt.param_groups for q in g["params"]])
        params = [q for g in opt.param_groups for q in g["params"] if q.grad is not None]
        metrics: dict[str, float] = {"learning_rate": p.learning_rate}
        if self._sharded:
            # Sharded gradients are already summed over ranks (reduce-scatter in backward).
            metrics["grad_norm"] = fsdp.clip_grad_norm(params, p.grad_clip_norm)
        elif params:
            if p.grad_clip_norm > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, p.grad_clip_norm)
            else:
                norm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(q.grad.detach()) for q in params])
                )
            metrics["grad_norm"] = float(norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        self._num_steps += 1
        metrics["step"] = float(self._num_steps)
        if not math.isfinite(metrics.get("grad_norm", 0.0)):
            metrics["nonfinite_grad"] = 1.0
        return OptimStepResponse(metrics=metrics)

    # --- state ----------------------------------------------------------------------------

    def save_state(
        self, name: str, user_metadata: Mapping[str, str] | None = None
    ) -> KFuture[SaveWeightsResponse]:
        """Checkpoint trainable weights, optimiser and RNG state under ``state_dir/name``.

        Accumulated (not yet applied) gradients are not saved: save between optim steps.
        """
        st.check_name(name)
        meta = dict(user_metadata or {})
        return self._worker.submit(self._save_state, name, meta)

    def _save_state(self, name: str, meta: dict[str, Any]) -> SaveWeightsResponse:
        lm = self._ensure()
        if self._sharded:
            assert self._shared_state_dir is not None
            final = sst.save_sharded(
                self._shared_state_dir / name,
                named_params=lm.trainable(),
                optimizer=self._optimizer,
                num_steps=self._num_steps,
                spec_json=self._saved_spec().model_dump(mode="json"),
                user_metadata=meta,
                is_main=self._dp.is_main,
            )
            return SaveWeightsResponse(path=str(final.resolve()))
        final = self.state_dir / name
        if not self._dp.is_main:
            # Every rank holds the same weights and optimiser state; rank 0 writes them.
            return SaveWeightsResponse(path=str(final.resolve()))
        st.save_checkpoint(
            final,
            weights={n: p for n, p in lm.trainable()},
            optimizer=self._optimizer,
            num_steps=self._num_steps,
            spec_json=self._saved_spec().model_dump(mode="json"),
            user_metadata=meta,
        )
        return SaveWeightsResponse(path=str(final.resolve()))

    def load_state(self, path: str) -> KFuture[LoadWeightsResponse]:
        """Restore weights, optimiser and RNG state so training continues bit-identically."""
        return self._worker.submit(self._load_state, path)

    def _resolve(self, path: str) -> Path:
        p = Path(path)
        if not p.exists() and not p.is_absolute() and self._state_dir is not None:
            candidate = self._state_dir / path
            if candidate.exists():
                return candidate
        return p

    def load_weights(self, path: str) -> KFuture[LoadWeightsResponse]:
        """Restore the trainable weights only; the optimiser starts fresh (Tinker's
        ``load_weights`` without optimizer). ``path`` is a :meth:`save_state` checkpoint or
        a :meth:`save_weights_for_sampler` directory."""
        return self._worker.submit(self._load_weights, path)

    def _checkpoint_dir(self, path: str) -> tuple[Path, bool]:
        """Where to read checkpoint ``path`` on this rank, and whether it is sharded."""
        directory = self._resolve(path)
        self._ensure()
        sharded = sst.is_sharded_checkpoint({"files": sst.marker_files(directory)})
        if self._dp.world_size > 1 and (self._sharded or sharded):
            # Shards are written once, into rank 0's directory (distributed.run_recipe does
            # not copy them into the other ranks' scratch runs): every rank reads rank 0's.
            directory = Path(dist_mod.broadcast_str(str(directory)))
            sharded = sst.is_sharded_checkpoint({"files": sst.marker_files(directory)})
        return directory, sharded

    def _load_weights(self, path: str) -> LoadWeightsResponse:
        directory, sharded = self._checkpoint_dir(path)
        if sharded:
            sst.restore(
                directory, self._ensure().trainable(), collective=self._sharded, optimizer=False
            )
            saved = None
        elif (directory / "weights.safetensors").is_file():
            saved = st.read_checkpoint(directory)["weights"]
        else:
            saved = self._sampler_weights(directory)
        lm = self._ensure()
        if saved is not None:
            self._copy_weights(directory, lm.trainable(), saved)
        self._optimizer = None
        self._num_steps = 0
        return LoadWeightsResponse(path=str(directory))

    def _sampler_weights(self, directory: Path) -> dict[str, torch.Tensor]:
        """A sampler-weights directory's tensors under this model's trainable names."""
        from safetensors.torch import load_file

        st.verify(directory)
        files = sorted(directory.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{directory} holds no safetensors weights")
        tensors: dict[str, torch.Tensor] = {}
        for f in files:
            tensors.update(load_file(str(f)))
        names = [n for n, _ in self._ensure().trainable()]
        if not self.spec.is_lora:
            return {n: tensors[n] for n in names if n in tensors}
        # peft saves adapter keys without the adapter name: "...lora_A.weight" is the live
        # "...lora_A.default.weight"; map each trainable name to its saved key.
        out = {}
        for n in names:
            key = n.replace(".default.", ".")
            if key in tensors:
                out[n] = tensors[key]
        return out

    def _copy_weights(
        self, directory: Path, trainable: Sequence[tuple[str, Any]], saved: dict[str, Any]
    ) -> None:
        _check_fits(directory, trainable, saved)
        with torch.no_grad():
            for n, param in trainable:
                fsdp.copy_into(param, saved[n])  # a DTensor takes its own shard
                param.grad = None

    def _load_state(self, path: str) -> LoadWeightsResponse:
        directory, sharded = self._checkpoint_dir(path)
        lm = self._ensure()
        if self._sharded or sharded:
            self._optimizer, self._num_steps = sst.restore(
                directory, lm.trainable(), collective=self._sharded
            )
            return LoadWeightsResponse(path=str(directory))
        ckpt = st.read_checkpoint(directory)
        trainable = lm.trainable()
        names = [n for n, _ in trainable]
        saved = ckpt["weights"]
        # Check everything before touching the model, so a bad checkpoint changes nothing.
        _check_fits(directory, trainable, saved)
        opt_js = ckpt["optimizer"]
        opt_state = None
        if opt_js.get("hparams") is not None:
            opt_state = st.optimizer_state_dict(ckpt["optimizer_tensors"], opt_js, names)
        with torch.no_grad():
            for n, param in trainable:
                param.copy_(saved[n].to(param.device, param.dtype))
                param.grad = None
        self._optimizer = None
        if opt_state is not None:
            opt = torch.optim.AdamW([p for _, p in trainable])
            opt.load_state_dict(opt_state)
            self._optimizer = opt
        self._num_steps = int(opt_js.get("num_steps", 0))
        st.restore_rng(ckpt["rng_tensors"], ckpt["rng"])
        return LoadWeightsResponse(path=str(directory))

    # --- weights for sampling -------------------------------------------------------------

    def save_weights_for_sampler(self, name: str) -> KFuture[SaveWeightsForSamplerResponse]:
        """Save the adapter (LoRA) or full weights as safetensors; the path loads with
        :meth:`HfSamplingClient.from_weights`."""
        st.check_name(name)
        return self._worker.submit(self._save_for_sampler, name)

    def _save_for_sampler(self, name: str) -> SaveWeightsForSamplerResponse:
        lm = self._ensure()
        final = self.state_dir / "sampler_weights" / name
        # Under FSDP every rank takes part in gathering the full weights onto rank 0.
        full = fsdp.full_state_dict(lm.model, all_ranks=False) if self._sharded else None
        if not self._dp.is_main:
            return SaveWeightsForSamplerResponse(path=str(final.resolve()))
        tmp = st.staging_dir(final)
        try:
            # peft / transformers write these files themselves; fsync them before committing.
            if self._shared is not None and self._adapter is not None:
                self._shared.save_adapter(self._adapter, tmp)
            elif full is None:
                lm.model.save_pretrained(str(tmp), safe_serialization=True)
            else:
                fsdp.save_pretrained_full(lm.model, full, tmp)
            st.fsync_tree(tmp)
            # The weights do not depend on how training was laid out over processes.
            spec = self._saved_spec().model_copy(update={"parallel": "replicate"})
            atomic_write_json(tmp / "kitchen_spec.json", spec.model_dump(mode="json"))
            st.write_marker(tmp)
            st.commit_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return SaveWeightsForSamplerResponse(path=str(final.resolve()))

    def save_weights_and_get_sampling_client(self, name: str) -> HfSamplingClient:
        """A sampling client over an in-memory snapshot of the weights as of this call.

        The snapshot is taken on the training worker after every call already submitted, so
        the returned client is usable at once while training goes on; ``name`` only labels it.
        A tenant of a shared base gets a frozen copy of its adapter on that base instead of
        a model copy: its requests decode in one batch with every other sampler of the base
        (:mod:`kitchen.adapters.hf.adapter_sampling`).
        """
        if self._shared is not None:
            from kitchen.adapters.hf.adapter_sampling import SharedAdapterSamplingClient

            shared = self._shared
            adapter = self._worker.submit(lambda: shared.snapshot(self._tenant_adapter()))
            return SharedAdapterSamplingClient(
                shared,
                adapter,
                name=name,
                seed=self.spec.seed,
                tokenizer=self._tokenizer,
                logprob_chunk_size=self.spec.logprob_chunk_size,
            )
        snap = self._worker.submit(self._snapshot)
        return self._sampler_class(
            snap,
            name=name,
            seed=self.spec.seed,
            tokenizer=self._tokenizer,
            logprob_chunk_size=self.spec.logprob_chunk_size,
        )

    def _snapshot(self) -> Any:
        if self._sharded:
            return fsdp.unsharded_copy(self._ensure().model, self.spec, self.device)
        model = self._ensure().model
        # Frozen tensors (the base weights under LoRA, possibly 4-bit) never change, so the
        # copy shares them; only trainable parameters are duplicated.
        memo: dict[int, Any] = {id(p): p for p in model.parameters() if not p.requires_grad}
        for b in model.buffers():
            memo[id(b)] = b
        grads = {}
        for p in model.parameters():
            if p.grad is not None:
                grads[id(p)] = p.grad
                p.grad = None
        try:
            snap = copy.deepcopy(model, memo)
        finally:
            for p in model.parameters():
                if id(p) in grads:
                    p.grad = grads[id(p)]
        for p in snap.parameters():
            p.requires_grad_(False)
        snap.eval()
        return snap

    # --- info ------------------------------------------------------------------------------

    def get_info(self) -> GetInfoResponse:
        """Model name, LoRA rank and parameter counts (loads the model if needed)."""
        return self._worker.submit(self._info).result()

    def _info(self) -> GetInfoResponse:
        lm = self._ensure()
        trainable = sum(p.numel() for _, p in lm.trainable())
        total = sum(_numel(p) for p in lm.model.parameters())
        name = self.spec.display_name
        arch = getattr(lm.model.config, "model_type", None)
        return GetInfoResponse(
            model_id=name,
            model_data=ModelData(
                arch=arch, model_name=name, tokenizer_id=self.spec.path or self.spec.hub_id
            ),
            is_lora=self.spec.is_lora,
            lora_rank=self.spec.lora.rank if self.spec.is_lora else None,
            model_name=name,
            trainable_params=int(trainable),
            total_params=int(total),
        )


def _activation_dtype(model: Any) -> torch.dtype:
    """The dtype attention scores are computed in (what a 4D additive mask must match)."""
    emb = model.get_input_embeddings()
    dtype = getattr(getattr(emb, "weight", None), "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def _numel(p: torch.Tensor) -> int:
    # A 4-bit weight stores two values per byte; count logical elements.
    shape = getattr(getattr(p, "quant_state", None), "shape", None)
    if shape is not None:
        return int(math.prod(shape))
    return int(p.numel())


def _check_fits(
    directory: Path, trainable: Sequence[tuple[str, Any]], saved: dict[str, Any]
) -> None:
    """Raise ``CheckpointError`` unless ``saved`` has exactly the trainable names and shapes."""
    names = [n for n, _ in trainable]
    if set(saved) != set(names):
        missing = sorted(set(names) - set(saved))[:3]
        extra = sorted(set(saved) - set(names))[:3]
        raise CheckpointError(
            f"checkpoint {directory} does not fit this model "
            f"(missing {missing}, unexpected {extra}); was it saved with another ModelSpec?"
        )
    for n, param in trainable:
        if saved[n].shape != param.shape:
            raise CheckpointError(
                f"checkpoint {directory}: {n} has shape {tuple(saved[n].shape)}, "
                f"model has {tuple(param.shape)}"
            )

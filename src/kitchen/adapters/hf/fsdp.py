"""FSDP2 sharding for the hf adapter (``model.parallel: fsdp``).

Under ``torchrun`` / ``accelerate launch`` with ``WORLD_SIZE >= 2``, :func:`shard_model` puts
every decoder layer and then the root module under ``torch.distributed.fsdp.fully_shard``:
each rank keeps ``1 / world_size`` of every parameter (a ``DTensor`` sharded on dim 0), of
its gradient and, because AdamW's state is created like its parameter, of the optimiser
moments. A layer's full weights exist only while it runs (all-gathered before its forward
and backward, freed afterwards).

Tinker semantics survive sharding:

- **SUM, not mean.** FSDP2 divides reduce-scattered gradients by the world size by default;
  kitchen's objective is a sum over datums, so :func:`shard_model` sets the divide factor to
  1 (SUM-only collectives, which gloo supports). Gradients of several ``forward_backward``
  calls accumulate in the sharded ``.grad`` until ``optim_step``.
- **Global clipping.** :func:`clip_grad_norm` sums each rank's local squared norms with one
  all-reduce, so every rank clips with the norm of the *whole* gradient.
- **Empty shards.** Every forward all-gathers each layer on every rank, so a rank with no
  datum still has to run one: :func:`run_dummy` pushes one token through the model and
  backpropagates ``0 * loss``, taking part in every collective while adding nothing.

On CUDA the policy is bf16 parameters and compute with fp32 gradient reduction; the sharded
parameters, and so AdamW's state, stay fp32. On CPU there is no mixed precision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from kitchen.errors import ConfigError


def check_launch(world_size: int) -> None:
    """``parallel=fsdp`` needs a process group of at least two ranks."""
    if world_size < 2:
        raise ConfigError(
            "model.parallel",
            "fsdp shards the model over processes, but this one is alone (WORLD_SIZE="
            f"{world_size}); launch >= 2 with torchrun / accelerate launch, or set "
            "model.parallel=replicate",
        )


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The repeated blocks to shard one by one (transformers' ``_no_split_modules``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def mixed_precision(device: torch.device) -> Any:
    """bf16 params/compute with fp32 reduction on CUDA; none on CPU."""
    if device.type != "cuda":
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard_model(model: Any, device: torch.device) -> Any:
    """Apply ``fully_shard`` to each decoder layer, then the root; gradients are summed."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    world = torch.distributed.get_world_size()
    mesh = init_device_mesh(device.type, (world,))
    kwargs: dict[str, Any] = {"mesh": mesh}
    mp = mixed_precision(device)
    if mp is not None:
        kwargs["mp_policy"] = mp
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return model


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of ``t`` (the tensor itself when it is not a DTensor)."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def copy_into(param: torch.Tensor, full: torch.Tensor) -> None:
    """Copy the unsharded ``full`` value into ``param``: all of it, or this rank's shard
    of it when ``param`` is a DTensor (sliced locally, every rank holds ``full``)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        value = full.to(param.device, param.dtype)
        mine = distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
        param.to_local().copy_(mine.to_local())
    else:
        param.copy_(full.to(param.device, param.dtype))


def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float) -> float:
    """The global L2 norm of the sharded gradients; scales them to ``max_norm`` if above
    (``max_norm <= 0``: measure only). One all-reduce of a float64 scalar."""
    import torch.distributed as dist

    grads = [local(p.grad) for p in params if p.grad is not None]
    sq = torch.zeros((), dtype=torch.float64)
    for g in grads:
        sq += g.detach().double().pow(2).sum().cpu()
    dist.all_reduce(sq, op=dist.ReduceOp.SUM)
    norm = float(sq.sqrt())
    if max_norm > 0 and norm > max_norm:
        coef = max_norm / (norm + 1e-6)  # what torch.nn.utils.clip_grad_norm_ applies
        for g in grads:
            g.mul_(coef)
    return norm


def run_dummy(model: Any, device: torch.device, backward: bool) -> None:
    """One token through the model (and ``0 * loss`` back): an empty shard's share of
    the step's all-gathers and reduce-scatters."""
    ids = torch.zeros((1, 1), dtype=torch.long, device=device)
    if backward:
        model.train()
        logits = model(input_ids=ids, use_cache=False).logits
        (logits.float().sum() * 0.0).backward()
        return
    model.eval()
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    reshard(model)


def reshard(model: Any) -> None:
    """Free the root unit's gathered parameters after a forward without backward.

    FSDP2 keeps the root's parameters (embeddings, final norm, head) gathered after its
    forward, for the backward that normally follows; an evaluation has none, so without
    this they would stay whole on every rank until the next training step."""
    model.reshard()


def local_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes this rank stores for ``tensors`` (its shards only)."""
    return sum(local(t).numel() * local(t).element_size() for t in tensors)


def shard_footprint(model: Any, optimizer: torch.optim.Optimizer | None) -> dict[str, int]:
    """Bytes of parameters, of trainable parameters and of optimiser state held here."""
    params = list(model.parameters())
    opt: list[torch.Tensor] = []
    if optimizer is not None:
        for state in optimizer.state.values():
            opt += [v for v in state.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
    return {
        "param_bytes": local_bytes(params),
        "trainable_bytes": local_bytes(p for p in params if p.requires_grad),
        "optimizer_bytes": local_bytes(opt),
    }


def full_state_dict(model: Any, *, all_ranks: bool) -> dict[str, torch.Tensor]:
    """The unsharded *trainable* parameters (a collective): on rank 0 only, in CPU memory,
    unless ``all_ranks`` (then every rank gets them on its device). Frozen weights (a LoRA
    base) are never gathered: they do not change, and every rank can load them itself."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    opts = StateDictOptions(
        full_state_dict=True, cpu_offload=not all_ranks, ignore_frozen_params=True
    )
    sd = get_model_state_dict(model, options=opts)
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def _unwrapped_class(model: Any) -> type:
    """The model's own class: ``fully_shard`` swaps in a subclass named ``FSDP<name>``."""
    from torch.distributed.fsdp import FSDPModule

    cls = type(model)
    while issubclass(cls, FSDPModule) and cls.__name__.startswith("FSDP"):
        cls = next(b for b in cls.__bases__ if b is not FSDPModule)
    return cls


def save_pretrained_full(model: Any, full: dict[str, torch.Tensor], directory: Any) -> None:
    """``save_pretrained`` of a sharded model from its gathered ``full`` state dict, with
    the files a single process writes (class names without FSDP's ``FSDP`` prefix)."""
    from torch.distributed.fsdp import FSDPModule

    swapped: list[tuple[Any, type]] = []
    for module in model.modules():
        if isinstance(module, FSDPModule):
            swapped.append((module, type(module)))
            module.__class__ = _unwrapped_class(module)
    try:
        model.save_pretrained(str(directory), state_dict=full, safe_serialization=True)
    finally:
        for module, cls in swapped:
            module.__class__ = cls


def unsharded_copy(model: Any, spec: Any, device: torch.device) -> Any:
    """A plain, frozen, eval-mode copy of a sharded model on every rank (a collective):
    what a sampling client runs on."""
    from kitchen.adapters.hf.model_spec import load_model

    full = full_state_dict(model, all_ranks=True)
    # The same spec loads the same frozen base; only the trained values are copied in.
    plain = load_model(spec.model_copy(update={"parallel": "replicate"}), device).model
    with torch.no_grad():
        for name, p in plain.named_parameters():
            if p.requires_grad:
                p.copy_(full[name])
            p.requires_grad_(False)
    plain.eval()
    return plain

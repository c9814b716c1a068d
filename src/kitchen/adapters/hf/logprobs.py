"""Per-token logprobs without ``[batch, tokens, vocab]`` logits.

A causal LM's last step, ``log_softmax(lm_head(hidden))[target]``, is where the memory goes
at large vocabularies: at 151,936 tokens a 4 × 1024 batch's float32 logits are 2.5 GB, and
autograd keeps the log-softmax for backward too. Here the model body runs as usual and the
head runs over *chunks of positions*, only at the positions asked for (the real ones, never
padding). Nothing of size ``vocab`` outlives a chunk:

- a plain ``nn.Linear`` head (the usual case, tied to the input embedding or not, frozen
  under LoRA/QLoRA or trained in ``full`` mode) goes through :class:`_ChunkedHeadLogprobs`, a
  custom autograd function whose chunks need one float32 ``[chunk, vocab]`` buffer, reused in
  place for logits, softmax and gradient. A frozen head's gradient with respect to the hidden
  states is finished in forward (an [N, hidden] tensor, see the class); a trained head's
  chunks are recomputed in backward, skipping positions whose upstream gradient is zero
  (prompt tokens under a completion-only mask, zero-advantage RL tokens).
- any other head (a LoRA-wrapped or quantised ``lm_head``, a sharded DTensor weight, logit
  soft-capping or scaling) runs per chunk under ``torch.utils.checkpoint``: correct for any
  module, at ~3 ``[chunk, vocab]`` buffers per chunk in backward.

Logits are upcast to float32 per chunk whatever the weights' dtype, so logprobs (and the
losses built on them) are float32 arithmetic, equal to the unchunked path's to float
rounding. ``chunk_size = 0`` (``ModelSpec.logprob_chunk_size``) selects that unchunked path:
``log_softmax(model(...).logits.float())``, kept for comparison and for architectures this
module cannot split (then it is used automatically).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

#: Positions per head chunk when the spec does not say: one float32 [512, 151936] buffer
#: is 0.31 GB, the largest transient of a step; each chunk is still a large matmul.
DEFAULT_CHUNK = 512


@dataclass(frozen=True)
class SplitLM:
    """A causal LM taken apart: ``body`` gives hidden states, ``head`` maps them to logits,
    ``post`` (if any) is applied to the float32 logits (soft-capping, scaling)."""

    body: Any
    head: Any
    post: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def plain_head(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """``(weight, bias)`` when the head is an ordinary dense ``nn.Linear``."""
        head = self.head
        if self.post is not None or type(head) is not torch.nn.Linear:
            return None
        w = head.weight
        if type(w) is not torch.nn.Parameter or not w.dtype.is_floating_point:
            return None  # DTensor (FSDP), bitsandbytes Params4bit, ...
        return w, head.bias


def _unwrap(model: Any) -> Any:
    """The transformers ``*ForCausalLM`` under a peft wrapper (LoRA layers stay injected)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _post(config: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    cap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(config, "logit_scale", None)
    div = getattr(config, "logits_scaling", None)
    if not cap and scale in (None, 1, 1.0) and div in (None, 1, 1.0):
        return None

    def post(logits: torch.Tensor) -> torch.Tensor:
        if scale not in (None, 1, 1.0):
            logits = logits * scale
        if div not in (None, 1, 1.0):
            logits = logits / div
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    return post


def _fsdp_sharded(model: Any) -> bool:
    """Whether FSDP2 manages ``model`` (its root unshards parameters in its own forward)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return False
    return any(isinstance(m, FSDPModule) for m in model.modules())


def split_lm(model: Any) -> SplitLM | None:
    """``model`` as body + head, or None when it does not have that shape.

    None under FSDP2 too: calling the body and head separately would skip the root module's
    unshard hooks, so sharded models take the full-logits path for now.
    """
    if _fsdp_sharded(model):
        return None
    causal = _unwrap(model)
    get_head = getattr(causal, "get_output_embeddings", None)
    prefix = getattr(causal, "base_model_prefix", None)
    if not callable(get_head) or not prefix:
        return None
    head = get_head()
    body = getattr(causal, prefix, None)
    if head is None or body is None or body is causal:
        return None
    return SplitLM(body=body, head=head, post=_post(getattr(causal, "config", None)))


def hidden_states(split: SplitLM, **inputs: Any) -> Any:
    """Run the body; its output (``last_hidden_state``, ``past_key_values``, ...)."""
    return split.body(**inputs)


class _ChunkedHeadLogprobs(torch.autograd.Function):
    """``log_softmax(h @ W.T + b)[target]`` per row of ``h``, chunk by chunk.

    For a frozen head (LoRA/QLoRA) the gradient with respect to ``h`` is
    ``g · (onehot − softmax) @ W``: everything but the scalar ``g`` per row is known in
    forward, so forward also stores ``J = (onehot − softmax) @ W`` ([N, H], float32) and
    backward is one multiply — the same two vocab-sized matmuls per chunk as unchunked
    autograd, without its [N, V] tensors. A trained head (``full`` mode, tied or not) needs
    ``dW = Σ g (onehot − softmax)ᵀ h`` too, so backward recomputes the chunk's logits then.
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk: int,
        jacobian: bool,
    ) -> torch.Tensor:
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        jac = (
            torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
            if jacobian
            else None
        )
        for s in range(0, hidden.shape[0], chunk):
            logits = _logits(hidden[s : s + chunk], weight, bias)
            t = targets[s : s + chunk]
            out[s : s + chunk] = _logprobs_in_place(logits, t, keep_softmax=jac is not None)
            if jac is not None:  # logits now holds softmax
                _onehot_minus_in_place(logits, t, None)
                jac[s : s + chunk] = logits.to(weight.dtype) @ weight
            del logits
        ctx.save_for_backward(hidden, weight, bias, targets, jac)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        hidden, weight, bias, targets, jac = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        if jac is not None and not (need_w or need_b):
            d_h = (jac * grad.float().unsqueeze(-1)).to(hidden.dtype) if need_h else None
            return d_h, None, None, None, None, None
        d_hidden = torch.zeros_like(hidden) if need_h else None
        d_weight = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        d_bias = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
        # Only rows that carry gradient are recomputed (one host sync per backward).
        rows = torch.nonzero(grad).squeeze(-1)
        for s in range(0, rows.numel(), ctx.chunk):
            idx = rows[s : s + ctx.chunk]
            h = hidden.index_select(0, idx)
            g = grad.index_select(0, idx).float()
            d_logits = _softmax_in_place(_logits(h, weight, bias))
            # d log p[target] / d logits = onehot(target) - softmax, scaled by g.
            _onehot_minus_in_place(d_logits, targets.index_select(0, idx), g)
            if d_weight is not None:
                d_weight.addmm_(d_logits.t(), h.float())
            if d_bias is not None:
                d_bias.add_(d_logits.sum(0))
            if d_hidden is not None:
                d_low = d_logits.to(weight.dtype)  # no copy when the head is float32
                d_hidden.index_copy_(0, idx, (d_low @ weight).to(hidden.dtype))
                del d_low
            del d_logits
        if d_weight is not None:
            d_weight = d_weight.to(weight.dtype)
        if d_bias is not None:
            d_bias = d_bias.to(bias.dtype)
        return d_hidden, d_weight, d_bias, None, None, None


def _onehot_minus_in_place(
    probs: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor | None
) -> None:
    """``probs ← scale · (onehot(targets) − probs)`` (``scale`` per row, 1 when None)."""
    probs.neg_()
    if scale is None:
        probs.scatter_add_(-1, targets.unsqueeze(-1), torch.ones_like(probs[:, :1]))
    else:
        probs.mul_(scale.unsqueeze(-1))
        probs.scatter_add_(-1, targets.unsqueeze(-1), scale.unsqueeze(-1))


def _logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    logits = h.to(weight.dtype) @ weight.t()
    if bias is not None:
        logits = logits + bias
    return logits.float()  # a fresh float32 buffer the callers may overwrite


def _logprobs_in_place(
    logits: torch.Tensor, targets: torch.Tensor, keep_softmax: bool = False
) -> torch.Tensor:
    """``log_softmax(logits)[targets]``, reusing ``logits`` as the only [n, V] buffer (left
    holding ``softmax(logits)`` with ``keep_softmax``)."""
    logits.sub_(logits.amax(-1, keepdim=True))
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    z = logits.exp_().sum(-1, keepdim=True)
    if keep_softmax:
        logits.div_(z)
    return picked - z.squeeze(-1).log()


def _softmax_in_place(logits: torch.Tensor) -> torch.Tensor:
    logits.sub_(logits.amax(-1, keepdim=True)).exp_()
    return logits.div_(logits.sum(-1, keepdim=True))


def _generic_chunk(
    head: Any, post: Callable[[torch.Tensor], torch.Tensor] | None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def run(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = head(h).float()
        if post is not None:
            logits = post(logits)
        return torch.log_softmax(logits, -1).gather(-1, t.unsqueeze(-1)).squeeze(-1)

    return run


def head_logprobs(
    split: SplitLM, hidden: torch.Tensor, targets: torch.Tensor, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """float32 ``log p(targets[i] | hidden[i])`` for ``hidden`` [N, H], ``targets`` [N]."""
    chunk = max(1, int(chunk))
    plain = split.plain_head
    if plain is not None:
        weight, bias = plain
        frozen = not weight.requires_grad and (bias is None or not bias.requires_grad)
        jacobian = frozen and hidden.requires_grad and torch.is_grad_enabled()
        out: torch.Tensor = _ChunkedHeadLogprobs.apply(
            hidden, weight, bias, targets, chunk, jacobian
        )
        return out
    run = _generic_chunk(split.head, split.post)
    grad = torch.is_grad_enabled()
    parts = []
    for s in range(0, hidden.shape[0], chunk):
        h, t = hidden[s : s + chunk], targets[s : s + chunk]
        parts.append(checkpoint(run, h, t, use_reentrant=False) if grad else run(h, t))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def full_logits_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The unchunked reference: ``log_softmax(logits.float())[targets]`` over [..., V]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def token_logprobs(
    model: Any,
    inputs: dict[str, Any],
    targets: torch.Tensor,
    mask: torch.Tensor,
    chunk: int | None = DEFAULT_CHUNK,
) -> torch.Tensor:
    """``log p(targets[b, t] | ...)`` [B, T] float32 at the ``mask`` positions (0 elsewhere).

    ``inputs`` are the model's keyword inputs (``input_ids``, ``attention_mask``, ...).
    ``chunk`` 0/None = the unchunked full-logits path.
    """
    split = split_lm(model) if chunk else None
    if split is None:
        logits = model(**inputs, use_cache=False).logits
        return torch.where(mask, full_logits_logprobs(logits, targets), 0.0)
    hidden = hidden_states(split, **inputs, use_cache=False).last_hidden_state
    flat = head_logprobs(split, hidden[mask], targets[mask], int(chunk or DEFAULT_CHUNK))
    out = torch.zeros(mask.shape, dtype=torch.float32, device=flat.device)
    return out.masked_scatter(mask, flat)

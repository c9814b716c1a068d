"""``BatchedHfSamplingClient``: concurrent ``sample`` calls decoded in one padded batch.

A sampler serving an RL step gets one request per prompt, all at once. Decoding them one
after another runs the model once per token per request; this client queues the requests
that arrive while its worker is busy (plus a short collection window) and decodes them
together: prompts left-padded to one length with an attention mask and matching position
ids, one forward per token for the whole batch.

Each request keeps its own parameters: seed (its own ``torch.Generator``, drawn from for
its rows only, in the same order as alone), temperature / top-k / top-p, ``max_tokens``,
token-id and string stops. A request's tokens therefore do not depend on what else is in
the batch (up to float rounding of the padded forward; ``tests/hf/test_batched_sampling.py``
checks token equality). Logprobs are the model's own, as in :class:`HfSamplingClient`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from kitchen.adapters.hf.sampling import (
    DEFAULT_MAX_TOKENS,
    HfSamplingClient,
    _cache_kwargs,
    _choose,
    _device,
    _forward_params,
    _new_cache,
    _prefix_logprobs,
)
from kitchen.ports.futures import KFuture
from kitchen.ports.types import ModelInput, SampledSequence, SampleResponse, SamplingParams


@dataclass
class _Request:
    tokens: list[int]
    n: int
    params: SamplingParams
    seed: int
    stop_ids: tuple[int, ...]
    stop_strs: tuple[str, ...]
    prompt_logprobs: bool
    future: KFuture[SampleResponse] = field(default_factory=KFuture)
    #: The peft adapter its rows decode with (a mixed-adapter batch), or None: the model's own.
    adapter: str | None = None
    #: The client whose tokenizer checks its string stops (None: the decoding client).
    owner: Any = None

    @property
    def max_tokens(self) -> int:
        return DEFAULT_MAX_TOKENS if self.params.max_tokens is None else self.params.max_tokens


class BatchedHfSamplingClient(HfSamplingClient):
    """An :class:`HfSamplingClient` that batches concurrent ``sample`` calls.

    ``max_batch_rows`` caps the rows (samples) decoded together; ``window_s`` is how long
    the worker waits for more requests before starting a batch.
    """

    def __init__(
        self, model: Any, *, max_batch_rows: int = 256, window_s: float = 0.002, **kwargs: Any
    ) -> None:
        super().__init__(model, **kwargs)
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        self._max_rows = max_batch_rows
        self._window_s = window_s
        self._pending: list[_Request] = []
        self._pending_lock = threading.Lock()
        self._draining = False

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> KFuture[SampleResponse]:
        """As :meth:`HfSamplingClient.sample`; decoded together with concurrent calls."""
        req = _Request(
            *self._request(prompt, num_samples, sampling_params, include_prompt_logprobs)
        )
        return self._enqueue(req)

    def _enqueue(self, req: _Request) -> KFuture[SampleResponse]:
        with self._pending_lock:
            self._pending.append(req)
            start = not self._draining
            self._draining = True
        if start:
            self._worker.submit(self._drain)
        return req.future

    # --- worker side -------------------------------------------------------------------

    def _take(self) -> list[_Request]:
        """The next batch: queued requests in arrival order, up to ``max_batch_rows``."""
        with self._pending_lock:
            batch: list[_Request] = []
            rows = 0
            while self._pending and (not batch or rows + self._pending[0].n <= self._max_rows):
                req = self._pending.pop(0)
                batch.append(req)
                rows += req.n
            if not batch:
                self._draining = False
            return batch

    def _drain(self) -> None:
        if self._window_s > 0:
            time.sleep(self._window_s)  # let the rest of a burst of requests arrive
        while True:
            batch = self._take()
            if not batch:
                return
            try:
                results = self._decode(batch)
            except BaseException as exc:
                for req in batch:
                    req.future.set_exception(exc)
            else:
                for req, res in zip(batch, results, strict=True):
                    req.future.set_result(res)

    def _prompt_logprobs_for(self, model: Any, req: _Request) -> list[float | None]:
        """Prompt logprobs of one request (unpadded, through the chunked head like alone)."""
        prompt = torch.tensor(req.tokens, dtype=torch.long, device=_device(model))
        return _prefix_logprobs(model, prompt, self._chunk)

    def _decode(self, reqs: list[_Request]) -> list[SampleResponse]:
        model = self._get()
        device = _device(model)
        eos = set(self._eos_ids(model))
        width = max(len(r.tokens) for r in reqs)
        owner: list[int] = []  # request index of each row
        for i, r in enumerate(reqs):
            owner += [i] * r.n
        n_rows = len(owner)
        ids = torch.zeros((n_rows, width), dtype=torch.long, device=device)
        mask = torch.zeros((n_rows, width), dtype=torch.long, device=device)
        # A mixed-adapter batch: peft applies each row's adapter ("__base__": none).
        extra: dict[str, Any] = {}
        if any(r.adapter is not None for r in reqs):
            extra["adapter_names"] = [reqs[i].adapter or "__base__" for i in owner]
        stoppers = [r.owner or self for r in reqs]
        for row, i in enumerate(owner):
            toks = reqs[i].tokens
            ids[row, width - len(toks) :] = torch.tensor(toks, device=device)
            mask[row, width - len(toks) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = []
        for r in reqs:
            g = torch.Generator(device=device)
            g.manual_seed(r.seed)
            gens.append(g)
        starts, at = [], 0
        for r in reqs:
            starts.append(at)
            at += r.n
        out_tokens: list[list[int]] = [[] for _ in range(n_rows)]
        out_lps: list[list[float]] = [[] for _ in range(n_rows)]
        stopped = [False] * n_rows
        finished = [r.max_tokens == 0 for r in reqs]
        prompt_lps: list[list[float | None] | None] = [None] * len(reqs)
        with torch.no_grad():
            for i, r in enumerate(reqs):
                if r.prompt_logprobs:
                    prompt_lps[i] = self._prompt_logprobs_for(model, r)
            cache = _new_cache(model)
            kwargs = _cache_kwargs(model, cache)
            if "logits_to_keep" in _forward_params(model):
                kwargs["logits_to_keep"] = 1
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, **kwargs, **extra)
            logits = out.logits[:, -1, :].float()
            step = 0
            while not all(finished):
                logp = torch.log_softmax(logits, dim=-1)
                nxt = torch.zeros(n_rows, dtype=torch.long, device=device)
                for i, r in enumerate(reqs):
                    if finished[i]:
                        continue
                    sl = slice(starts[i], starts[i] + r.n)
                    nxt[sl] = _choose(logits[sl], r.params, gens[i])
                chosen = logp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1).tolist()
                picked = nxt.tolist()
                for i, r in enumerate(reqs):
                    if finished[i]:
                        continue
                    for row in range(starts[i], starts[i] + r.n):
                        if stopped[row]:
                            continue
                        out_tokens[row].append(picked[row])
                        out_lps[row].append(float(chosen[row]))
                        tok = picked[row]
                        if (
                            tok in eos
                            or tok in r.stop_ids
                            or (r.stop_strs and stoppers[i]._hit_stop(out_tokens[row], r.stop_strs))
                        ):
                            stopped[row] = True
                    rows = range(starts[i], starts[i] + r.n)
                    if step + 1 >= r.max_tokens or all(stopped[row] for row in rows):
                        finished[i] = True
                if all(finished):
                    break
                step += 1
                # Finished rows keep decoding (their output is ignored): one batched call.
                mask = torch.cat([mask, mask.new_ones((n_rows, 1))], dim=1)
                pos = pos[:, -1:] + 1
                out = model(
                    input_ids=nxt.unsqueeze(-1),
                    attention_mask=mask,
                    position_ids=pos,
                    **_cache_kwargs(model, cache),
                    **extra,
                )
                logits = out.logits[:, -1, :].float()
        results = []
        for i, r in enumerate(reqs):
            seqs = tuple(
                SampledSequence(
                    stop_reason="stop" if stopped[row] else "length",
                    tokens=tuple(out_tokens[row]),
                    logprobs=tuple(out_lps[row]),
                )
                for row in range(starts[i], starts[i] + r.n)
            )
            lps = prompt_lps[i]
            results.append(SampleResponse(seqs, tuple(lps) if lps is not None else None))
        return results

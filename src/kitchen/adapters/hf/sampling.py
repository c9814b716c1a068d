"""``SamplingClient`` over a local transformers/peft model.

A small sampling loop with a KV cache rather than ``generate()``: it gives the exact logprob
of every sampled token and full control over seeding. Reported logprobs are those of the
model itself (``log_softmax`` of the raw logits, before temperature / top-k / top-p), the same
quantity ``compute_logprobs`` and the training client's ``forward`` return, so RL importance
ratios compare like with like.
"""

from __future__ import annotations

import inspect
import random
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kitchen.adapters.hf.logprobs import (
    DEFAULT_CHUNK,
    full_logits_logprobs,
    head_logprobs,
    split_lm,
)
from kitchen.ports.futures import Future, KFuture, SerialWorker
from kitchen.ports.types import ModelInput, SampledSequence, SampleResponse, SamplingParams

#: ``max_tokens`` when SamplingParams leaves it unset.
DEFAULT_MAX_TOKENS = 128


class HfSamplingClient:
    """Samples from a fixed model; implements ``kitchen.ports.SamplingClient``.

    ``model`` is a module, a future of one (a training snapshot still being taken), or a
    zero-argument loader called on the worker at first use. ``eos_token_ids`` end a sequence
    (default: the model's ``eos_token_id``; pass ``()`` for none). ``tokenizer`` (anything with
    ``decode(list[int]) -> str``) is needed only for string stop sequences. ``seed`` makes
    calls without ``SamplingParams.seed`` reproducible too. ``logprob_chunk_size`` is the
    chunk of prompt positions the LM head scores at a time in ``compute_logprobs`` and prompt
    logprobs (``0`` = full logits; see :mod:`kitchen.adapters.hf.logprobs`); sampling itself
    only ever computes the last position's logits.
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        eos_token_ids: Sequence[int] | None = None,
        tokenizer: Any = None,
        seed: int = 0,
        logprob_chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        self.name = name
        self._chunk = int(logprob_chunk_size)
        self._source = model
        self._model: Any = None
        self._eos = None if eos_token_ids is None else tuple(int(t) for t in eos_token_ids)
        self._tokenizer = tokenizer
        self._worker = SerialWorker("kitchen-hf-sample")
        self._seeds = random.Random(seed)
        self._seed_lock = threading.Lock()

    @classmethod
    def from_weights(
        cls,
        path: str,
        spec: Any = None,
        *,
        device: str | None = None,
        **kwargs: Any,
    ) -> HfSamplingClient:
        """Load weights saved by ``save_weights_for_sampler`` (lazily, on the worker).

        ``spec`` (a ModelSpec) defaults to the one stored next to the weights; ``device``
        overrides its ``device`` (both resolved by :mod:`kitchen.adapters.hf.device`).
        """

        def loader() -> Any:
            from kitchen.adapters.hf import state as st
            from kitchen.adapters.hf.model_spec import ModelSpec, load_base, placement
            from kitchen.io import read_json

            directory = Path(path)
            st.verify(directory)
            ms = spec
            if ms is None:
                ms = ModelSpec.model_validate(read_json(directory / "kitchen_spec.json"))
            if ms.mode == "full":
                from transformers import AutoModelForCausalLM

                place = placement(ms, device)
                full: Any = AutoModelForCausalLM.from_pretrained(str(directory), dtype=place.dtype)
                return full.to(place.device)
            from peft import PeftModel

            with warnings.catch_warnings():
                # peft calls a transformers API deprecated in v5; nothing for users to act on.
                warnings.simplefilter("ignore", FutureWarning)
                return PeftModel.from_pretrained(load_base(ms, device), str(directory))

        return cls(loader, name=kwargs.pop("name", Path(path).name), **kwargs)

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    # --- model --------------------------------------------------------------------------

    def _get(self) -> Any:
        if self._model is None:
            src = self._source
            if hasattr(src, "result") and hasattr(src, "done"):
                src = src.result()
            elif callable(src) and not isinstance(src, torch.nn.Module):
                src = src()
            src.eval()
            self._model = src
            self._source = None
        return self._model

    @property
    def model(self) -> Any:
        """The model sampled from (waits for a snapshot or load to finish)."""
        return self._worker.submit(self._get).result()

    def _eos_ids(self, model: Any) -> tuple[int, ...]:
        if self._eos is not None:
            return self._eos
        ids: Any = None
        gen = getattr(model, "generation_config", None)
        if gen is not None:
            ids = gen.eos_token_id
        if ids is None:
            ids = getattr(model.config, "eos_token_id", None)
        if ids is None:
            return ()
        return tuple(ids) if isinstance(ids, list | tuple) else (int(ids),)

    # --- port methods -------------------------------------------------------------------

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> Future[SampleResponse]:
        """Draw ``num_samples`` continuations; the same seed gives the same tokens."""
        return self._worker.submit(
            self._sample,
            *self._request(prompt, num_samples, sampling_params, include_prompt_logprobs),
        )

    def _request(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool,
    ) -> tuple[Any, ...]:
        """Validate a ``sample`` call (in the caller's thread) into ``_sample``'s arguments."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if prompt.length == 0:
            raise ValueError("sample needs a non-empty prompt")
        p = sampling_params
        if p.temperature < 0 or not 0.0 < p.top_p <= 1.0:
            raise ValueError("SamplingParams needs temperature >= 0 and 0 < top_p <= 1")
        if p.max_tokens is not None and p.max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {p.max_tokens}")
        stop_ids, stop_strs = _split_stop(p.stop)
        if stop_strs and self._tokenizer is None:
            raise ValueError("string stop sequences need HfSamplingClient(tokenizer=...)")
        seed = p.seed
        if seed is None:
            with self._seed_lock:
                seed = self._seeds.getrandbits(63)
        return (
            prompt.to_ints(),
            num_samples,
            p,
            int(seed),
            stop_ids,
            stop_strs,
            include_prompt_logprobs,
        )

    def compute_logprobs(self, prompt: ModelInput) -> KFuture[list[float | None]]:
        """Logprob of each prompt token given its prefix; ``None`` first."""
        if prompt.length == 0:
            raise ValueError("compute_logprobs needs a non-empty prompt")
        return self._worker.submit(self._prompt_logprobs, prompt.to_ints())

    def topk_prompt_logprobs(
        self, prompt: ModelInput, k: int
    ) -> KFuture[list[list[tuple[int, float]] | None]]:
        """The ``k`` most likely tokens (with logprobs) at each prompt position given its
        prefix, most likely first; ``None`` for the first position."""
        if prompt.length == 0:
            raise ValueError("topk_prompt_logprobs needs a non-empty prompt")
        if k < 1:
            raise ValueError(f"top-k needs k >= 1, got {k}")
        return self._worker.submit(self._topk_prompt, prompt.to_ints(), int(k))

    # --- worker side -------------------------------------------------------------------

    def _topk_prompt(self, tokens: list[int], k: int) -> list[list[tuple[int, float]] | None]:
        model = self._get()
        ids = torch.tensor([tokens], dtype=torch.long, device=_device(model))
        with torch.no_grad():
            top_ids, top_lps = _topk_logprobs(model, ids[0], k, self._chunk)
        rows = zip(top_ids.tolist(), top_lps.tolist(), strict=True)
        return [None, *([(int(t), float(v)) for t, v in zip(i, v_, strict=True)] for i, v_ in rows)]

    def _prompt_logprobs(self, tokens: list[int]) -> list[float | None]:
        model = self._get()
        ids = torch.tensor([tokens], dtype=torch.long, device=_device(model))
        with torch.no_grad():
            return _prefix_logprobs(model, ids[0], self._chunk)

    def _sample(
        self,
        tokens: list[int],
        n: int,
        p: SamplingParams,
        seed: int,
        stop_ids: tuple[int, ...],
        stop_strs: tuple[str, ...],
        include_prompt_logprobs: bool,
    ) -> SampleResponse:
        model = self._get()
        device = _device(model)
        ends = torch.tensor(
            sorted(set(stop_ids) | set(self._eos_ids(model))), dtype=torch.long, device=device
        )
        max_tokens = DEFAULT_MAX_TOKENS if p.max_tokens is None else p.max_tokens
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        prompt = torch.tensor([tokens], dtype=torch.long, device=device)
        # Everything below stays on the device: sampled ids and logprobs go into
        # preallocated buffers, stop checks are batched, and the host waits once per step
        # (is every row finished?) plus once at the end to read the buffers.
        out_ids = torch.zeros((n, max_tokens), dtype=torch.long, device=device)
        out_lps = torch.zeros((n, max_tokens), dtype=torch.float32, device=device)
        lengths = torch.zeros(n, dtype=torch.long, device=device)
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        text_tokens: list[list[int]] = [[] for _ in range(n)]
        prompt_lps: list[float | None] | None = None
        with torch.no_grad():
            cache, logits, prompt_lps = _prefill(
                model, prompt, n, include_prompt_logprobs, self._chunk
            )
            for step in range(max_tokens):
                nxt = _choose(logits, p, gen)
                chosen = torch.log_softmax(logits, dim=-1).gather(-1, nxt.unsqueeze(-1))
                alive = ~finished
                out_ids[:, step] = nxt
                out_lps[:, step] = chosen.squeeze(-1)
                lengths += alive.long()
                hit = alive & torch.isin(nxt, ends) if ends.numel() else torch.zeros_like(alive)
                if stop_strs:
                    hit |= self._string_stops(nxt, alive, text_tokens, stop_strs)
                finished |= hit
                if step == max_tokens - 1 or bool(finished.all()):
                    break
                # Finished rows keep decoding (their output is ignored): one batched call.
                logits = _decode(model, nxt.unsqueeze(-1), cache)
        ids_rows = out_ids.cpu().tolist()
        lp_rows = out_lps.cpu().tolist()
        n_rows = lengths.cpu().tolist()
        stopped = finished.cpu().tolist()
        seqs = tuple(
            SampledSequence(
                stop_reason="stop" if stopped[i] else "length",
                tokens=tuple(ids_rows[i][: n_rows[i]]),
                logprobs=tuple(lp_rows[i][: n_rows[i]]),
            )
            for i in range(n)
        )
        return SampleResponse(
            sequences=seqs,
            prompt_logprobs=tuple(prompt_lps) if prompt_lps is not None else None,
        )

    def _string_stops(
        self,
        nxt: torch.Tensor,
        alive: torch.Tensor,
        text_tokens: list[list[int]],
        stops: tuple[str, ...],
    ) -> torch.Tensor:
        """String stop sequences need the decoded text: the one case that reads this step's
        tokens on the host (a single transfer for the whole batch)."""
        toks, live = nxt.tolist(), alive.tolist()
        hit = [False] * len(toks)
        for i, (tok, on) in enumerate(zip(toks, live, strict=True)):
            if on:
                text_tokens[i].append(int(tok))
                hit[i] = self._hit_stop(text_tokens[i], stops)
        return torch.tensor(hit, dtype=torch.bool, device=nxt.device)

    def _hit_stop(self, toks: list[int], stops: tuple[str, ...]) -> bool:
        text = self._tokenizer.decode(toks)
        return any(s and s in text for s in stops)


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model always has parameters
        return torch.device("cpu")


def _prefix_logprobs(model: Any, ids: torch.Tensor, chunk: int) -> list[float | None]:
    """``[None, log p(ids[1] | ids[:1]), ...]``: the chunked LM head over the body's hidden
    states (no [T, vocab] logits), or full logits for a model that cannot be split."""
    split = split_lm(model) if chunk else None
    if split is None:
        logits = model(input_ids=ids.unsqueeze(0), use_cache=False).logits[0]
        logp = full_logits_logprobs(logits[:-1], ids[1:])
    else:
        hidden = split.body(input_ids=ids.unsqueeze(0), use_cache=False).last_hidden_state
        logp = head_logprobs(split, hidden[0, :-1], ids[1:], chunk)
    return [None, *(float(x) for x in logp.tolist())]


def _topk_logprobs(
    model: Any, ids: torch.Tensor, k: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (ids, logprobs) after each prefix ``ids[:t+1]``, ``t < T - 1``; the head runs
    over chunks of positions (no [T, vocab] logits) unless the model cannot be split."""
    split = split_lm(model) if chunk else None
    if split is None:
        logits = model(input_ids=ids.unsqueeze(0), use_cache=False).logits[0, :-1].float()
        top = torch.log_softmax(logits, dim=-1).topk(min(k, logits.shape[-1]), dim=-1)
        return top.indices, top.values
    hidden = split.body(input_ids=ids.unsqueeze(0), use_cache=False).last_hidden_state[0, :-1]
    parts_i, parts_v = [], []
    for s in range(0, hidden.shape[0], chunk):
        logits = split.head(hidden[s : s + chunk]).float()
        if split.post is not None:
            logits = split.post(logits)
        top = torch.log_softmax(logits, dim=-1).topk(min(k, logits.shape[-1]), dim=-1)
        parts_i.append(top.indices)
        parts_v.append(top.values)
    if not parts_i:
        empty = torch.zeros((0, k), device=ids.device)
        return empty.long(), empty
    return torch.cat(parts_i), torch.cat(parts_v)


def _forward_params(model: Any) -> set[str]:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return set(inspect.signature(inner.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover - every transformers model has one
        return set()


def _cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The KV cache argument by its current name (``cache`` since transformers 5.x; older
    releases call it ``past_key_values``, which newer ones warn about)."""
    name = "cache" if "cache" in _forward_params(model) else "past_key_values"
    return {name: cache, "use_cache": True}


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:  # pragma: no cover - transformers before the config argument
        return DynamicCache()


def _prefill(
    model: Any, prompt: torch.Tensor, n: int, with_prompt_logprobs: bool, chunk: int
) -> tuple[Any, torch.Tensor, list[float | None] | None]:
    """Run the prompt once, then repeat its KV cache for the ``n`` samples.

    Returns the cache, the next-token float32 logits [n, V] (only the last position's are
    computed), and the prompt logprobs when asked for (the chunked head over the prompt)."""
    cache = _new_cache(model)
    split = split_lm(model) if with_prompt_logprobs and chunk else None
    prompt_lps: list[float | None] | None = None
    if split is not None:
        hidden = split.body(input_ids=prompt, **_cache_kwargs(model, cache)).last_hidden_state
        logp = head_logprobs(split, hidden[0, :-1], prompt[0, 1:], chunk)
        prompt_lps = [None, *(float(x) for x in logp.tolist())]
        last = split.head(hidden[:, -1, :]).float()
        logits = split.post(last) if split.post is not None else last
    else:
        kwargs = _cache_kwargs(model, cache)
        if not with_prompt_logprobs and "logits_to_keep" in _forward_params(model):
            kwargs["logits_to_keep"] = 1
        all_logits = model(input_ids=prompt, **kwargs).logits
        if with_prompt_logprobs:
            logp = full_logits_logprobs(all_logits[0, :-1], prompt[0, 1:])
            prompt_lps = [None, *(float(x) for x in logp.tolist())]
        logits = all_logits[:, -1, :].float()
    if n > 1:
        cache.batch_repeat_interleave(n)
        logits = logits.expand(n, -1)
    return cache, logits, prompt_lps


def _decode(model: Any, ids: torch.Tensor, cache: Any) -> torch.Tensor:
    """One decode step for every row; the cache grows in place. float32 logits [n, V]."""
    logits: torch.Tensor = model(input_ids=ids, **_cache_kwargs(model, cache)).logits
    return logits[:, -1, :].float()


def _split_stop(stop: Any) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if stop is None:
        return (), ()
    if isinstance(stop, str):
        return (), (stop,)
    ids = tuple(int(s) for s in stop if isinstance(s, int))
    strs = tuple(s for s in stop if isinstance(s, str))
    return ids, strs


def _choose(logits: torch.Tensor, p: SamplingParams, gen: torch.Generator) -> torch.Tensor:
    """Pick one token per row: greedy at temperature 0, else top-k / top-p sampling."""
    if p.temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits / p.temperature
    if p.top_k is not None and p.top_k > 0 and p.top_k < scores.shape[-1]:
        kth = torch.topk(scores, p.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p.
        before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = before >= p.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)

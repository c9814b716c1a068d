"""``SamplingClient`` over a local transformers/peft model.

A small sampling loop with a KV cache rather than ``generate()``: it gives the exact logprob
of every sampled token and full control over seeding. Reported logprobs are those of the
model itself (``log_softmax`` of the raw logits, before temperature / top-k / top-p), the same
quantity ``compute_logprobs`` and the training client's ``forward`` return, so RL importance
ratios compare like with like.
"""

from __future__ import annotations

import random
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

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
    calls without ``SamplingParams.seed`` reproducible too.
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        eos_token_ids: Sequence[int] | None = None,
        tokenizer: Any = None,
        seed: int = 0,
    ) -> None:
        self.name = name
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
        device: str = "cpu",
        **kwargs: Any,
    ) -> HfSamplingClient:
        """Load weights saved by ``save_weights_for_sampler`` (lazily, on the worker).

        ``spec`` (a ModelSpec) defaults to the one stored next to the weights.
        """

        def loader() -> Any:
            from kitchen.adapters.hf import state as st
            from kitchen.adapters.hf.model_spec import ModelSpec, load_base
            from kitchen.io import read_json

            directory = Path(path)
            st.verify(directory)
            ms = spec
            if ms is None:
                ms = ModelSpec.model_validate(read_json(directory / "kitchen_spec.json"))
            if ms.mode == "full":
                from transformers import AutoModelForCausalLM

                full: Any = AutoModelForCausalLM.from_pretrained(str(directory))
                return full.to(device)
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
        return self._worker.submit(
            self._sample,
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
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
        top = torch.log_softmax(logits, dim=-1).topk(min(k, logits.shape[-1]), dim=-1)
        rows = zip(top.indices.tolist(), top.values.tolist(), strict=True)
        return [None, *([(int(t), float(v)) for t, v in zip(i, v_, strict=True)] for i, v_ in rows)]

    def _prompt_logprobs(self, tokens: list[int]) -> list[float | None]:
        model = self._get()
        ids = torch.tensor([tokens], dtype=torch.long, device=_device(model))
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits[0].float()
        return _prefix_logprobs(logits, ids[0])

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
        ends = set(stop_ids) | set(self._eos_ids(model))
        max_tokens = DEFAULT_MAX_TOKENS if p.max_tokens is None else p.max_tokens
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        ids = torch.tensor([tokens] * n, dtype=torch.long, device=device)
        out_tokens: list[list[int]] = [[] for _ in range(n)]
        out_lps: list[list[float]] = [[] for _ in range(n)]
        reasons = ["length"] * n
        done = [False] * n
        prompt_lps: list[float | None] | None = None
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True)
            if include_prompt_logprobs:
                prompt_lps = _prefix_logprobs(out.logits[0].float(), ids[0])
            logits = out.logits[:, -1, :].float()
            past = out.past_key_values
            for step in range(max_tokens):
                logp = torch.log_softmax(logits, dim=-1)
                nxt = _choose(logits, p, gen)
                chosen = logp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
                for i in range(n):
                    if done[i]:
                        continue
                    tok = int(nxt[i])
                    out_tokens[i].append(tok)
                    out_lps[i].append(float(chosen[i]))
                    if tok in ends or (stop_strs and self._hit_stop(out_tokens[i], stop_strs)):
                        done[i] = True
                        reasons[i] = "stop"
                if all(done) or step == max_tokens - 1:
                    break
                # Finished rows keep decoding (their output is ignored): one batched call.
                out = model(input_ids=nxt.unsqueeze(-1), past_key_values=past, use_cache=True)
                logits = out.logits[:, -1, :].float()
                past = out.past_key_values
        seqs = tuple(
            SampledSequence(
                stop_reason="stop" if reasons[i] == "stop" else "length",
                tokens=tuple(out_tokens[i]),
                logprobs=tuple(out_lps[i]),
            )
            for i in range(n)
        )
        return SampleResponse(
            sequences=seqs,
            prompt_logprobs=tuple(prompt_lps) if prompt_lps is not None else None,
        )

    def _hit_stop(self, toks: list[int], stops: tuple[str, ...]) -> bool:
        text = self._tokenizer.decode(toks)
        return any(s and s in text for s in stops)


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model always has parameters
        return torch.device("cpu")


def _prefix_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> list[float | None]:
    """``[None, log p(ids[1] | ids[:1]), ...]`` from per-position ``logits`` [T, V]."""
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[1:].unsqueeze(-1)).squeeze(-1)
    return [None, *(float(x) for x in logp.tolist())]


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

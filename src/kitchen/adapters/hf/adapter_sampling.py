"""Samplers on a :class:`~kitchen.adapters.hf.shared_base.SharedBase`: one batch, many adapters.

Every sampler of a shared base is a thin :class:`SharedAdapterSamplingClient`: the name of a
frozen adapter on the base (``"__base__"`` for the base model itself) plus its seed stream
and tokenizer. Its ``sample`` calls go to the base's one :class:`MixedAdapterBatcher`, which
decodes the requests that are waiting, whichever sampler (session) they came from, in one
left-padded batch: peft's mixed-adapter forward (``adapter_names``, one per row) applies each
row's own adapter. Each request keeps its own seed, params and stops exactly as in
:class:`~kitchen.adapters.hf.batched_sampling.BatchedHfSamplingClient`, so its tokens do not
depend on what else is in the batch (``tests/hf/test_shared_sampling.py``).

Everything runs on the base's single worker thread, between training jobs (the module
docstring of :mod:`kitchen.adapters.hf.shared_base` says why that is required).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kitchen.adapters.hf.batched_sampling import BatchedHfSamplingClient, _Request
from kitchen.adapters.hf.sampling import HfSamplingClient
from kitchen.adapters.hf.shared_base import BASE, SharedBase
from kitchen.ports.futures import KFuture
from kitchen.ports.types import ModelInput, SampleResponse, SamplingParams


@contextmanager
def using(shared: SharedBase, adapter: str) -> Iterator[Any]:
    """The shared model in eval mode with only ``adapter`` applied (``"__base__"``: none),
    for calls that cannot take ``adapter_names`` (the chunked LM head calls the model's
    body directly, around peft's forward). Worker thread only."""
    peft = shared.peft
    was_training = peft.training
    peft.eval()
    try:
        if adapter == BASE:
            with peft.disable_adapter():
                yield peft
        else:
            shared.activate(adapter)
            yield peft
    finally:
        if was_training:
            peft.train()


class MixedAdapterBatcher(BatchedHfSamplingClient):
    """Decodes the queued requests of every sampler on ``shared`` in one padded batch, on
    ``shared.worker``. Not a sampler itself: samplers hand it requests tagged with their
    adapter."""

    def __init__(self, shared: SharedBase, **kwargs: Any) -> None:
        super().__init__(
            None, name="shared-base", logprob_chunk_size=shared.spec.logprob_chunk_size, **kwargs
        )
        self._shared = shared
        self._worker = shared.worker  # serialised with training (see shared_base)
        #: Batches decoded so far and the adapters of the last one (for tests, benchmarks).
        self.batches = 0
        self.last_adapters: set[str] = set()

    def _get(self) -> Any:
        return self._shared.peft

    def _take(self) -> list[_Request]:
        # A sampler closed while its requests queued: fail those, decode the rest.
        while True:
            batch = super()._take()
            held = set(self._shared.peft.peft_config) | {BASE}
            live = [r for r in batch if (r.adapter or BASE) in held]
            for r in batch:
                if (r.adapter or BASE) not in held:
                    r.future.set_exception(RuntimeError("this sampling client is closed"))
            if live or not batch:
                return live

    def _prompt_logprobs_for(self, model: Any, req: _Request) -> list[float | None]:
        if req.adapter is None:  # a one-adapter batch: already inside using()
            return super()._prompt_logprobs_for(model, req)
        with using(self._shared, req.adapter):
            return super()._prompt_logprobs_for(model, req)

    def _decode(self, reqs: list[_Request]) -> list[SampleResponse]:
        adapters = {r.adapter or BASE for r in reqs}
        self.batches += 1
        self.last_adapters = adapters
        if len(adapters) == 1:
            # One adapter (an RL step's requests to one sampler): activate it and run the
            # plain forward, which skips peft's per-layer mixed-batch indexing.
            plain = [dataclasses.replace(r, adapter=None) for r in reqs]
            with using(self._shared, adapters.pop()):
                return super()._decode(plain)
        peft = self._shared.peft
        was_training = peft.training
        peft.eval()  # peft refuses adapter_names in training mode; no dropout either
        try:
            return super()._decode(reqs)
        finally:
            if was_training:
                peft.train()

    def submit(self, req: _Request) -> KFuture[SampleResponse]:
        return self._enqueue(req)


class SharedAdapterSamplingClient(HfSamplingClient):
    """A sampler over adapter ``adapter`` of ``shared`` (``"__base__"``: the base model),
    decoded together with every other sampler of that base. ``adapter`` may be a future
    (the snapshot is taken on the worker, after the training calls before it). ``close``
    drops the adapter; the base stays."""

    def __init__(self, shared: SharedBase, adapter: str | Any, **kwargs: Any) -> None:
        super().__init__(None, **kwargs)
        self._shared = shared
        self._adapter_src = adapter
        self._worker = shared.worker
        self._closed = False

    @property
    def adapter(self) -> str:
        """The adapter this sampler decodes with (waits for its snapshot)."""
        src = self._adapter_src
        if hasattr(src, "result") and hasattr(src, "done"):
            self._adapter_src = src = src.result()
        return str(src)

    def _get(self) -> Any:
        return self._shared.peft

    @property
    def model(self) -> Any:
        """The shared model (every sampler of this base returns the same object)."""
        return self._worker.submit(self._get).result()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this sampling client is closed")

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> KFuture[SampleResponse]:
        """As :meth:`HfSamplingClient.sample`; decoded in one batch with concurrent
        requests of every sampler on this base."""
        self._check_open()
        req = _Request(
            *self._request(prompt, num_samples, sampling_params, include_prompt_logprobs)
        )
        req.adapter, req.owner = self.adapter, self
        batcher: MixedAdapterBatcher = self._shared.batcher
        return batcher.submit(req)

    def compute_logprobs(self, prompt: ModelInput) -> KFuture[list[float | None]]:
        self._check_open()
        return super().compute_logprobs(prompt)

    def _prompt_logprobs(self, tokens: list[int]) -> list[float | None]:
        with using(self._shared, self.adapter):
            return super()._prompt_logprobs(tokens)

    def _topk_prompt(self, tokens: list[int], k: int) -> list[list[tuple[int, float]] | None]:
        with using(self._shared, self.adapter):
            return super()._topk_prompt(tokens, k)

    def close(self) -> None:
        """Drop this sampler's adapter from the base (queued on the worker, not awaited;
        the base sampler has none). Requests still queued for it fail as closed."""
        if self._closed:
            return
        self._closed = True
        name = self.adapter
        if name != BASE:
            self._worker.submit(self._shared.remove, name)

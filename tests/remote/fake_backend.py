"""A tiny numpy bigram model implementing the training/sampling ports, for server tests.

Used as ``kitchen serve --backend tests.remote.fake_backend:factory`` when the noop
adapter is not importable. It learns for real (so loss goes down) and is deterministic.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kitchen.io import atomic_write_bytes, atomic_write_json, read_json
from kitchen.ports.futures import SerialWorker
from kitchen.ports.types import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    GetInfoResponse,
    LoadWeightsResponse,
    ModelData,
    ModelInput,
    OptimStepResponse,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
    TensorData,
)
from kitchen.ports.validation import validate_datums


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


class BigramSampler:
    def __init__(self, w: np.ndarray, seed: int) -> None:
        self.w = w.copy()
        self.seed = seed
        self.worker = SerialWorker("bigram-sample")

    def _logp(self, tokens: Sequence[int]) -> list[float | None]:
        lp = _log_softmax(self.w)
        return [None] + [float(lp[a, b]) for a, b in itertools.pairwise(tokens)]

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> Any:
        def run() -> SampleResponse:
            toks = prompt.to_ints()
            rng = np.random.default_rng(
                sampling_params.seed if sampling_params.seed is not None else self.seed
            )
            temp = max(sampling_params.temperature, 1e-5)
            seqs = []
            for _ in range(num_samples):
                prev, out, lps = toks[-1], [], []
                for _ in range(sampling_params.max_tokens or 8):
                    lp = _log_softmax(self.w[prev] / temp)
                    nxt = int(rng.choice(len(lp), p=np.exp(lp)))
                    out.append(nxt)
                    lps.append(float(_log_softmax(self.w[prev])[nxt]))
                    prev = nxt
                seqs.append(SampledSequence("length", tuple(out), tuple(lps)))
            plp = tuple(self._logp(toks)) if include_prompt_logprobs else None
            return SampleResponse(tuple(seqs), plp)

        return self.worker.submit(run)

    def compute_logprobs(self, prompt: ModelInput) -> Any:
        return self.worker.submit(lambda: self._logp(prompt.to_ints()))


class BigramTrainer:
    def __init__(
        self, vocab_size: int, seed: int, state_dir: str, name: str, lora_rank: int | None
    ) -> None:
        self.v = vocab_size
        self.name = name
        self.lora_rank = lora_rank
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.w = rng.normal(0, 0.02, (vocab_size, vocab_size))
        self.grad = np.zeros_like(self.w)
        self.m = np.zeros_like(self.w)
        self.s = np.zeros_like(self.w)
        self.t = 0
        self.state_dir = Path(state_dir)
        self.worker = SerialWorker("bigram")

    def _fb(self, data: Sequence[Datum], loss_fn: str, backward: bool) -> ForwardBackwardOutput:
        validate_datums(data, loss_fn)
        if loss_fn != "cross_entropy":
            raise ValueError(f"bigram fake backend supports cross_entropy only, not {loss_fn}")
        lp_all = _log_softmax(self.w)
        total, wsum, outs = 0.0, 0.0, []
        for d in data:
            x = d.model_input.to_ints()
            y = list(d.loss_fn_inputs["target_tokens"].data)
            wts = list(d.loss_fn_inputs["weights"].data)
            lps = [float(lp_all[a, b]) for a, b in zip(x, y, strict=True)]
            total += -sum(w * lp for w, lp in zip(wts, lps, strict=True))
            wsum += sum(wts)
            outs.append({"logprobs": TensorData(tuple(lps), "float32")})
            if backward:
                p = np.exp(lp_all)
                for a, b, w in zip(x, y, wts, strict=True):
                    if w:
                        g = p[a].copy()
                        g[b] -= 1.0
                        self.grad[a] += w * g
        return ForwardBackwardOutput(
            "ArrayRecord",
            tuple(outs),
            {"loss:sum": total, "loss:mean": total / wsum if wsum else math.nan},
        )

    def forward_backward(
        self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None = None
    ) -> Any:
        return self.worker.submit(self._fb, list(data), loss_fn, True)

    def forward(
        self, data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, float] | None = None
    ) -> Any:
        return self.worker.submit(self._fb, list(data), loss_fn, False)

    def optim_step(self, p: AdamParams) -> Any:
        def run() -> OptimStepResponse:
            self.t += 1
            g = self.grad
            self.m = p.beta1 * self.m + (1 - p.beta1) * g
            self.s = p.beta2 * self.s + (1 - p.beta2) * g * g
            mh = self.m / (1 - p.beta1**self.t)
            sh = self.s / (1 - p.beta2**self.t)
            self.w -= p.learning_rate * (mh / (np.sqrt(sh) + p.eps) + p.weight_decay * self.w)
            norm = float(np.sqrt((g * g).sum()))
            self.grad = np.zeros_like(self.w)
            return OptimStepResponse({"grad_norm:mean": norm})

        return self.worker.submit(run)

    def _save(self, name: str, optimizer: bool) -> str:
        d = self.state_dir / name
        arrays = {"w": self.w}
        if optimizer:
            arrays.update(m=self.m, s=self.s)
        for k, a in arrays.items():
            buf = a.astype(np.float64).tobytes()
            atomic_write_bytes(d / f"{k}.bin", buf)
        atomic_write_json(d / "meta.json", {"t": self.t, "v": self.v, "optimizer": optimizer})
        return str(d)

    def _load(self, path: str, optimizer: bool) -> None:
        d = Path(path)
        meta = read_json(d / "meta.json")

        def rd(k: str) -> np.ndarray:
            return (
                np.frombuffer((d / f"{k}.bin").read_bytes(), dtype=np.float64)
                .reshape(self.v, self.v)
                .copy()
            )

        self.w = rd("w")
        if optimizer and meta.get("optimizer"):
            self.m, self.s, self.t = rd("m"), rd("s"), int(meta["t"])

    def save_state(self, name: str, user_metadata: Mapping[str, str] | None = None) -> Any:
        return self.worker.submit(lambda: SaveWeightsResponse(self._save(name, True)))

    def load_state(self, path: str) -> Any:
        def run() -> LoadWeightsResponse:
            self._load(path, True)
            return LoadWeightsResponse(path)

        return self.worker.submit(run)

    def load_weights(self, path: str) -> Any:
        def run() -> LoadWeightsResponse:
            self._load(path, False)
            return LoadWeightsResponse(path)

        return self.worker.submit(run)

    def save_weights_for_sampler(self, name: str) -> Any:
        return self.worker.submit(lambda: SaveWeightsForSamplerResponse(self._save(name, False)))

    def save_weights_and_get_sampling_client(self, name: str) -> BigramSampler:
        return self.worker.submit(lambda: BigramSampler(self.w, self.seed)).result()

    def get_info(self) -> GetInfoResponse:
        return GetInfoResponse(
            model_id=self.name,
            model_data=ModelData("bigram", self.name, None),
            is_lora=self.lora_rank is not None,
            lora_rank=self.lora_rank,
            model_name=self.name,
        )


class BigramBackend:
    def __init__(self, spec: dict[str, Any], model_name: str | None) -> None:
        self.name = model_name or str(spec.get("name", "bigram"))
        self.vocab = int(spec.get("vocab_size", 64))

    def model_names(self) -> list[str]:
        return [self.name]

    def check_model(self, base_model: str) -> None:
        if base_model != self.name:
            raise ValueError(f"base_model {base_model!r} is not served here; use {self.name!r}")

    def create_training(
        self, *, base_model: str, lora_rank: int | None, seed: int | None, state_dir: Path
    ) -> BigramTrainer:
        self.check_model(base_model)
        return BigramTrainer(self.vocab, int(seed or 0), str(state_dir), base_model, lora_rank)

    def sampling_for_base(self, base_model: str, state_dir: Path) -> BigramSampler:
        return self.create_training(
            base_model=base_model, lora_rank=None, seed=0, state_dir=state_dir
        ).save_weights_and_get_sampling_client("base")


def factory(spec: dict[str, Any], model_name: str | None) -> BigramBackend:
    return BigramBackend(spec, model_name)


__all__ = ["BigramBackend", "factory", "json"]

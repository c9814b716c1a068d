"""``NoopTrainingClient``: the TrainingClient port over the tiny pure-Python model.

Every call is queued on one :class:`~kitchen.ports.futures.SerialWorker`, so futures
resolve asynchronously and strictly in submission order, as the port requires.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kitchen.adapters.noop._model import (
    DEFAULT_BUCKETS,
    AdamState,
    Weights,
    accumulate_grads,
    adamw_step,
    run_loss,
    zeros_like,
)
from kitchen.adapters.noop.sampling import NoopSamplingClient
from kitchen.errors import CheckpointError
from kitchen.io import atomic_write_json, read_json
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

STATE_FILE = "noop_state.json"
WEIGHTS_FILE = "noop_weights.json"
STATE_FORMAT = "kitchen-noop-training-state/1"


class NoopTrainingClient:
    """A real, tiny, deterministic model behind the TrainingClient port (no torch, no numpy).

    ``state_dir``: where ``save_state``/``save_weights_for_sampler`` write
    (``<state_dir>/<name>/noop_state.json``); without it checkpoints stay in memory and are
    addressed as ``noop://<name>``.
    """

    def __init__(
        self,
        model_name: str = "noop-tiny",
        vocab_size: int = 512,
        seed: int = 0,
        lora_rank: int | None = 8,
        state_dir: str | None = None,
        num_buckets: int = DEFAULT_BUCKETS,
    ) -> None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        self.model_name = model_name
        self.vocab_size = vocab_size
        self.seed = seed
        self.lora_rank = lora_rank
        self.state_dir = state_dir
        self.weights = Weights.initial(vocab_size, seed, num_buckets)
        self.grads = zeros_like(self.weights.rows)
        self.adam = AdamState(zeros_like(self.weights.rows), zeros_like(self.weights.rows))
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._memory: dict[str, dict[str, Any]] = {}
        self._worker = SerialWorker(f"noop-training-{model_name}")

    # -- helpers ----------------------------------------------------------------------

    def _record(self, method: str, /, **args: Any) -> None:
        self.calls.append((method, args))

    def _submit(self, fn: Any, *args: Any) -> KFuture[Any]:
        return self._worker.submit(fn, *args)

    @property
    def num_params(self) -> int:
        return sum(len(r) for r in self.weights.rows)

    # -- forward / backward -----------------------------------------------------------

    def _run(
        self,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float] | None,
        backward: bool,
    ) -> ForwardBackwardOutput:
        validate_datums(data, loss_fn)
        batch = run_loss(self.weights, data, loss_fn, loss_fn_config, backward)
        if backward:
            accumulate_grads(self.weights, self.grads, batch)
        outputs = tuple({"logprobs": TensorData(tuple(lp), "float32")} for lp in batch.logprobs)
        metrics = {
            "loss:sum": batch.loss_sum,
            "loss:mean": batch.loss_mean,
            "num_tokens": float(batch.num_tokens),
        }
        return ForwardBackwardOutput(loss_fn, outputs, metrics)

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> KFuture[ForwardBackwardOutput]:
        data = list(data)
        self._record("forward_backward", n=len(data), loss_fn=loss_fn)
        return self._submit(self._run, data, loss_fn, loss_fn_config, True)

    def forward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> KFuture[ForwardBackwardOutput]:
        data = list(data)
        self._record("forward", n=len(data), loss_fn=loss_fn)
        return self._submit(self._run, data, loss_fn, loss_fn_config, False)

    # -- optimiser --------------------------------------------------------------------

    def _optim(self, hp: AdamParams) -> OptimStepResponse:
        rows = self.weights.rows
        metrics = adamw_step(rows, self.grads, self.adam, hp)
        self.weights = Weights(self.vocab_size, self.weights.num_buckets, rows)
        self.grads = zeros_like(rows)
        return OptimStepResponse(metrics)

    def optim_step(self, adam_params: AdamParams) -> KFuture[OptimStepResponse]:
        self._record("optim_step", learning_rate=adam_params.learning_rate)
        return self._submit(self._optim, adam_params)

    # -- state ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything that defines the trainer: weights, Adam moments and step, pending grads."""
        return {
            "format": STATE_FORMAT,
            "model_name": self.model_name,
            "vocab_size": self.vocab_size,
            "num_buckets": self.weights.num_buckets,
            "seed": self.seed,
            "params": [list(r) for r in self.weights.rows],
            "grads": [list(r) for r in self.grads],
            "adam_m": [list(r) for r in self.adam.m],
            "adam_v": [list(r) for r in self.adam.v],
            "adam_step": self.adam.step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"not a noop training state (format {state.get('format')!r})")
        shape = (int(state["vocab_size"]), int(state["num_buckets"]))
        if shape != (self.vocab_size, self.weights.num_buckets):
            raise CheckpointError(
                f"noop state has vocab_size/num_buckets {shape}, this model has "
                f"{(self.vocab_size, self.weights.num_buckets)}"
            )

        def rows(key: str) -> list[list[float]]:
            return [[float(x) for x in r] for r in state[key]]

        self.weights = Weights(self.vocab_size, shape[1], rows("params"))
        self.grads = rows("grads")
        self.adam = AdamState(rows("adam_m"), rows("adam_v"), int(state["adam_step"]))

    def _save_state(self, name: str, metadata: dict[str, str]) -> SaveWeightsResponse:
        state = {**self.state_dict(), "name": name, "user_metadata": metadata}
        if self.state_dir is None:
            self._memory[name] = json.loads(json.dumps(state))
            return SaveWeightsResponse(f"noop://{name}")
        directory = Path(self.state_dir) / name
        atomic_write_json(directory / STATE_FILE, state, indent=None)
        return SaveWeightsResponse(str(directory))

    def save_state(
        self, name: str, user_metadata: Mapping[str, str] | None = None
    ) -> KFuture[SaveWeightsResponse]:
        _check_name(name)
        self._record("save_state", name=name)
        return self._submit(self._save_state, name, dict(user_metadata or {}))

    def _read(self, path: str, filename: str) -> dict[str, Any]:
        if path.startswith("noop://"):
            key = path[len("noop://") :]
            if key not in self._memory:
                raise CheckpointError(
                    f"no in-memory noop checkpoint {path!r}; known: {sorted(self._memory)}"
                )
            state: dict[str, Any] = self._memory[key]
            return state
        p = Path(path)
        if p.is_dir():
            p = p / filename
        if not p.is_file():
            raise CheckpointError(f"noop checkpoint {path!r} not found (expected {p})")
        loaded: dict[str, Any] = read_json(p)
        return loaded

    def _load_state(self, path: str) -> LoadWeightsResponse:
        self.load_state_dict(self._read(path, STATE_FILE))
        return LoadWeightsResponse(path)

    def load_state(self, path: str) -> KFuture[LoadWeightsResponse]:
        self._record("load_state", path=path)
        return self._submit(self._load_state, os.fspath(path))

    def _save_weights(self, name: str) -> SaveWeightsForSamplerResponse:
        payload = {**self.weights.to_json(), "name": name}
        if self.state_dir is None:
            self._memory[f"weights/{name}"] = json.loads(json.dumps(payload))
            return SaveWeightsForSamplerResponse(f"noop://weights/{name}")
        directory = Path(self.state_dir) / "sampler_weights" / name
        atomic_write_json(directory / WEIGHTS_FILE, payload, indent=None)
        return SaveWeightsForSamplerResponse(str(directory))

    def save_weights_for_sampler(self, name: str) -> KFuture[SaveWeightsForSamplerResponse]:
        _check_name(name)
        self._record("save_weights_for_sampler", name=name)
        return self._submit(self._save_weights, name)

    def _load_weights(self, path: str) -> LoadWeightsResponse:
        try:
            obj = self._read(path, WEIGHTS_FILE)
        except CheckpointError:
            obj = self._read(path, STATE_FILE)
        weights = Weights.from_json(obj)
        if (weights.vocab_size, weights.num_buckets) != (
            self.vocab_size,
            self.weights.num_buckets,
        ):
            raise CheckpointError(
                f"noop weights at {path!r} have vocab_size/num_buckets "
                f"{(weights.vocab_size, weights.num_buckets)}, this model has "
                f"{(self.vocab_size, self.weights.num_buckets)}"
            )
        self.weights = weights
        self.grads = zeros_like(weights.rows)
        self.adam = AdamState(zeros_like(weights.rows), zeros_like(weights.rows))
        return LoadWeightsResponse(path)

    def load_weights(self, path: str) -> KFuture[LoadWeightsResponse]:
        """Load weights only (from a sampler-weights or a full state path); fresh optimiser."""
        self._record("load_weights", path=path)
        return self._submit(self._load_weights, os.fspath(path))

    def load_weights_for_sampler(self, path: str) -> Weights:
        """Read weights written by :meth:`save_weights_for_sampler` (either form of path)."""
        return Weights.from_json(self._read(path, WEIGHTS_FILE))

    def save_weights_and_get_sampling_client(self, name: str) -> NoopSamplingClient:
        """Snapshot the weights after every call queued so far; the sampler never changes."""
        _check_name(name)
        self._record("save_weights_and_get_sampling_client", name=name)
        snapshot: Weights = self._submit(self.weights.copy).result()
        return NoopSamplingClient(weights=snapshot, vocab_size=self.vocab_size, seed=self.seed)

    # -- info -------------------------------------------------------------------------

    def get_info(self) -> GetInfoResponse:
        n = self.num_params
        return GetInfoResponse(
            model_id=f"noop:{self.model_name}:seed{self.seed}",
            model_data=ModelData(arch="noop-hashed-bigram", model_name=self.model_name),
            is_lora=True,
            lora_rank=self.lora_rank,
            model_name=self.model_name,
            trainable_params=n,
            total_params=n,
        )

    def close(self) -> None:
        self._worker.shutdown(wait=True)


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"checkpoint name {name!r} must be a non-empty single path segment")

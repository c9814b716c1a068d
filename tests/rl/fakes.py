"""A tiny pure-Python model behind the TrainingClient/SamplingClient ports, for unit tests of
the RL/DPO/distillation stages that must not depend on other adapters.

logits(v | prefix) = Σ_{k=1..K} W_k[prefix[-k]][v]: a log-linear model over the last K
tokens, with exact gradients for the three built-in losses and AdamW.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from kitchen.ports.futures import resolved
from kitchen.ports.losses import clip_thresholds
from kitchen.ports.tokenizer import RenderedChat
from kitchen.ports.types import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    GetInfoResponse,
    LoadWeightsResponse,
    OptimStepResponse,
    SampledSequence,
    SampleResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
    TensorData,
)
from kitchen.ports.validation import validate_datums

K = 4


class Model:
    def __init__(self, vocab: int, seed: int = 0) -> None:
        self.vocab = vocab
        rng = random.Random(seed)
        self.w: dict[tuple[int, int], list[float]] = {}
        self._rng = rng

    def row(self, k: int, tok: int) -> list[float]:
        key = (k, tok)
        r = self.w.get(key)
        if r is None:
            r = self.w[key] = [0.0] * self.vocab
        return r

    def logprobs(self, prefix: Sequence[int]) -> list[float]:
        logits = [0.0] * self.vocab
        for k in range(1, K + 1):
            if len(prefix) >= k:
                r = self.w.get((k, prefix[-k]))
                if r is not None:
                    logits = [a + b for a, b in zip(logits, r, strict=True)]
        m = max(logits)
        lse = m + math.log(sum(math.exp(x - m) for x in logits))
        return [x - lse for x in logits]


class FakeSampler:
    def __init__(self, model: Model) -> None:
        self.model = model

    def sample(
        self,
        prompt: Any,
        num_samples: int,
        sampling_params: Any,
        include_prompt_logprobs: bool = False,
    ) -> Any:
        rng = random.Random(sampling_params.seed)
        stop = set(sampling_params.stop or [])
        seqs = []
        for _ in range(num_samples):
            toks = prompt.to_ints()
            out, lps = [], []
            for _ in range(sampling_params.max_tokens or 8):
                lp = self.model.logprobs(toks)
                t = sampling_params.temperature
                scaled = [x / t for x in lp]
                m = max(scaled)
                ps = [math.exp(x - m) for x in scaled]
                z = sum(ps)
                v = rng.choices(range(self.model.vocab), weights=ps)[0]
                out.append(v)
                lps.append(scaled[v] - m - math.log(z))
                toks = [*toks, v]
                if v in stop:
                    break
            seqs.append(
                SampledSequence(
                    "stop" if out and out[-1] in stop else "length", tuple(out), tuple(lps)
                )
            )
        return resolved(SampleResponse(tuple(seqs)))

    def compute_logprobs(self, prompt: Any) -> Any:
        toks = prompt.to_ints()
        out: list[float | None] = [None]
        for i in range(1, len(toks)):
            out.append(self.model.logprobs(toks[:i])[toks[i]])
        return resolved(out)


class FakeTraining:
    def __init__(self, vocab: int = 260, seed: int = 0) -> None:
        self.model = Model(vocab, seed)
        self.grads: dict[tuple[int, int], list[float]] = {}
        self.m: dict[tuple[int, int], list[float]] = {}
        self.v: dict[tuple[int, int], list[float]] = {}
        self.t = 0
        self.saved: dict[str, Any] = {}
        self.calls: list[str] = []

    def _run(
        self, data: Sequence[Datum], loss_fn: str, cfg: Mapping[str, float] | None, backward: bool
    ) -> ForwardBackwardOutput:
        validate_datums(data, loss_fn)
        outs = []
        total = 0.0
        for d in data:
            toks = d.model_input.to_ints()
            tgt = d.loss_fn_inputs["target_tokens"].data
            lps_out = []
            for i in range(len(toks)):
                lp = self.model.logprobs(toks[: i + 1])
                y = int(tgt[i])
                lpy = lp[y]
                lps_out.append(lpy)
                if loss_fn == "cross_entropy":
                    coef = d.loss_fn_inputs["weights"].data[i]  # loss = -coef * lp
                else:
                    q = d.loss_fn_inputs["logprobs"].data[i]
                    a = d.loss_fn_inputs["advantages"].data[i]
                    r = math.exp(lpy - q)
                    if loss_fn == "ppo":
                        lo, hi = clip_thresholds(cfg)
                        c = min(max(r, lo), hi)
                        use = r * a <= c * a
                        coef = r * a if use else 0.0
                        total -= min(r * a, c * a)
                        coef_lp = coef
                    else:
                        total -= r * a
                        coef_lp = r * a
                    coef = coef_lp
                if loss_fn == "cross_entropy":
                    total -= coef * lpy
                if backward and coef:
                    # d(-coef*lp_y)/dlogits = -coef*(onehot - p)
                    p = [math.exp(x) for x in lp]
                    g = [coef * pv for pv in p]
                    g[y] -= coef
                    for k in range(1, K + 1):
                        if i + 1 >= k:
                            key = (k, toks[i + 1 - k])
                            gr = self.grads.setdefault(key, [0.0] * self.model.vocab)
                            for j in range(self.model.vocab):
                                gr[j] += g[j]
            outs.append({"logprobs": TensorData(tuple(lps_out), "float32")})
        return ForwardBackwardOutput(loss_fn, tuple(outs), {"loss:sum": total})

    def forward_backward(self, data: Any, loss_fn: Any, loss_fn_config: Any = None) -> Any:
        self.calls.append(f"fb:{loss_fn}")
        return resolved(self._run(data, loss_fn, loss_fn_config, True))

    def forward(self, data: Any, loss_fn: Any, loss_fn_config: Any = None) -> Any:
        self.calls.append(f"fwd:{loss_fn}")
        return resolved(self._run(data, loss_fn, loss_fn_config, False))

    def optim_step(self, p: AdamParams) -> Any:
        self.calls.append("optim")
        self.t += 1
        norm = math.sqrt(sum(x * x for g in self.grads.values() for x in g))
        scale = 1.0
        if p.grad_clip_norm and norm > p.grad_clip_norm:
            scale = p.grad_clip_norm / norm
        for key, g in self.grads.items():
            w = self.model.row(*key)
            m = self.m.setdefault(key, [0.0] * len(g))
            v = self.v.setdefault(key, [0.0] * len(g))
            for j, gj in enumerate(g):
                gj *= scale
                m[j] = p.beta1 * m[j] + (1 - p.beta1) * gj
                v[j] = p.beta2 * v[j] + (1 - p.beta2) * gj * gj
                mh = m[j] / (1 - p.beta1**self.t)
                vh = v[j] / (1 - p.beta2**self.t)
                w[j] -= p.learning_rate * (mh / (math.sqrt(vh) + p.eps) + p.weight_decay * w[j])
        self.grads = {}
        return resolved(OptimStepResponse({"grad_norm": norm}))

    def save_state(self, name: str, user_metadata: Any = None) -> Any:
        self.saved[name] = copy.deepcopy((self.model.w, self.m, self.v, self.t))
        return resolved(SaveWeightsResponse(name))

    def load_state(self, path: str) -> Any:
        w, self.m, self.v, self.t = copy.deepcopy(self.saved[path])
        self.model.w = w
        return resolved(LoadWeightsResponse(path))

    def save_weights_for_sampler(self, name: str) -> Any:
        return resolved(SaveWeightsForSamplerResponse(name))

    def save_weights_and_get_sampling_client(self, name: str) -> FakeSampler:
        m = Model(self.model.vocab)
        m.w = copy.deepcopy(self.model.w)
        return FakeSampler(m)

    def get_info(self) -> GetInfoResponse:
        return GetInfoResponse("fake")


class ByteTokenizer:
    vocab_size = 260
    eos_token_id = 257
    bos_token_id = 256
    pad_token_id = None

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode())

    def decode(self, tokens: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return bytes(t for t in tokens if t < 256).decode(errors="replace")

    def render_chat(
        self,
        messages: Any,
        *,
        train_on: Any = "last_assistant",
        add_generation_prompt: bool = False,
    ) -> RenderedChat:
        toks: list[int] = []
        for msg in messages:
            toks += self.encode(f"{msg['role']}: {msg['content']}\n")
        if add_generation_prompt:
            toks += self.encode("assistant: ")
        return RenderedChat(tuple(toks), tuple([1.0] * len(toks)))


def fake_ports(**extra: Any) -> Any:
    from kitchen.ports.bundle import Ports

    return Ports(training=FakeTraining(), tokenizer=ByteTokenizer(), extra=dict(extra))


class MemoryMetrics:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.records.append({"step": step, **metrics})

    def log_params(self, params: Any) -> None:
        pass

    def history(self) -> list[dict[str, Any]]:
        return list(self.records)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self.records if key in r]

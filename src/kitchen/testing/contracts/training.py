"""Contract tests for :class:`kitchen.ports.TrainingClient`.

Abstract fixtures (a subclass must override):

- ``client``: a fresh TrainingClient (function scope; receives ``tmp_path`` if wanted)
- ``vocab_size``: token ids used in datums are drawn from ``[0, vocab_size)``

Optional fixtures (defaults shown in the code): ``adam_params`` (used for training steps),
``train_steps``, ``seq_len``, ``batch_size``, ``logprob_atol`` (agreement between two
computations of the same logprobs), ``loss_rtol``/``loss_atol`` (``loss:sum`` against the
reference formula), ``restore_atol`` (``load_state`` exactness; 0 = bit-identical) and
``result_timeout`` (seconds to wait on a future).

The datums come from :mod:`kitchen.testing.datums`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from kitchen.ports import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    GetInfoResponse,
    ModelInput,
    SamplingClient,
    TensorData,
    TrainingClient,
)
from kitchen.ports import losses as ref
from kitchen.testing.datums import PPO_CONFIG, ce_datum, make_sequences, rl_datum

# ----------------------------------------------------------------------------- helpers


def logprobs_of(out: ForwardBackwardOutput) -> list[list[float]]:
    return [[float(x) for x in o["logprobs"].data] for o in out.loss_fn_outputs]


def flat(rows: Sequence[Sequence[float]]) -> list[float]:
    return [x for r in rows for x in r]


def ce_total(out: ForwardBackwardOutput, data: Sequence[Datum]) -> float:
    total = 0.0
    for d, lp in zip(data, logprobs_of(out), strict=True):
        total += ref.cross_entropy(lp, d.loss_fn_inputs["weights"].data)
    return total


def call_expecting_value_error(call: Callable[[], Any], timeout: float) -> ValueError:
    """The error may be raised by the call itself or surface from ``.result()``."""
    try:
        fut = call()
        fut.result(timeout=timeout)
    except ValueError as exc:
        return exc
    raise AssertionError("expected ValueError, nothing was raised")


def assert_close_lists(a: Sequence[float], b: Sequence[float], atol: float) -> None:
    assert len(a) == len(b)
    worst = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
    assert worst <= atol, f"lists differ by up to {worst} (> {atol})"


# ----------------------------------------------------------------------------- contract


class TrainingClientContract:
    """Behaviour every TrainingClient must have. Subclass and supply ``client``/``vocab_size``."""

    # -- abstract fixtures ------------------------------------------------------------

    @pytest.fixture
    def client(self, tmp_path: Any) -> TrainingClient:
        raise NotImplementedError("the concrete suite must provide a `client` fixture")

    @pytest.fixture
    def vocab_size(self) -> int:
        raise NotImplementedError("the concrete suite must provide a `vocab_size` fixture")

    # -- optional fixtures ------------------------------------------------------------

    @pytest.fixture
    def adam_params(self) -> AdamParams:
        return AdamParams(learning_rate=5e-2)

    @pytest.fixture
    def train_steps(self) -> int:
        return 5

    @pytest.fixture
    def seq_len(self) -> int:
        return 12

    @pytest.fixture
    def batch_size(self) -> int:
        return 4

    @pytest.fixture
    def logprob_atol(self) -> float:
        return 1e-5

    @pytest.fixture
    def loss_rtol(self) -> float:
        return 1e-4

    @pytest.fixture
    def loss_atol(self) -> float:
        return 1e-4

    @pytest.fixture
    def restore_atol(self) -> float:
        return 0.0

    @pytest.fixture
    def result_timeout(self) -> float:
        return 120.0

    @pytest.fixture
    def batch(self, vocab_size: int, seq_len: int, batch_size: int) -> list[Datum]:
        return [ce_datum(s) for s in make_sequences(vocab_size, batch_size, seq_len, seed=1)]

    # -- futures ----------------------------------------------------------------------

    def test_forward_backward_returns_future_that_resolves(
        self, client: TrainingClient, batch: list[Datum], result_timeout: float
    ) -> None:
        fut = client.forward_backward(batch, "cross_entropy")
        assert callable(getattr(fut, "result", None)) and callable(getattr(fut, "done", None))
        out = fut.result(timeout=result_timeout)
        assert fut.done()
        assert isinstance(out, ForwardBackwardOutput)
        assert math.isfinite(float(out.metrics["loss:sum"]))

    def test_every_call_returns_a_future(
        self,
        client: TrainingClient,
        batch: list[Datum],
        adam_params: AdamParams,
        result_timeout: float,
    ) -> None:
        futs = {
            "forward": client.forward(batch, "cross_entropy"),
            "forward_backward": client.forward_backward(batch, "cross_entropy"),
            "optim_step": client.optim_step(adam_params),
            "save_state": client.save_state("contract-futures"),
            "save_weights_for_sampler": client.save_weights_for_sampler("contract-sampler"),
        }
        for name, fut in futs.items():
            assert hasattr(fut, "result") and hasattr(fut, "done"), name
        results: dict[str, Any] = {
            name: fut.result(timeout=result_timeout) for name, fut in futs.items()
        }
        assert all(f.done() for f in futs.values())
        path = results["save_state"].path
        assert isinstance(path, str) and path
        assert isinstance(results["save_weights_for_sampler"].path, str)
        load = client.load_state(path)
        assert hasattr(load, "result") and hasattr(load, "done")
        load.result(timeout=result_timeout)
        assert load.done()

    # -- outputs ----------------------------------------------------------------------

    @pytest.mark.parametrize("method", ["forward", "forward_backward"])
    def test_loss_fn_outputs_one_per_datum_with_logprobs(
        self, client: TrainingClient, vocab_size: int, method: str, result_timeout: float
    ) -> None:
        seqs = make_sequences(vocab_size, 3, 1, seed=2)
        seqs[1] = make_sequences(vocab_size, 1, 7, seed=3)[0]
        seqs[2] = make_sequences(vocab_size, 1, 15, seed=4)[0]
        data = [ce_datum(s) for s in seqs]
        out = getattr(client, method)(data, "cross_entropy").result(timeout=result_timeout)
        assert len(out.loss_fn_outputs) == len(data)
        for d, o in zip(data, out.loss_fn_outputs, strict=True):
            lp = [float(x) for x in o["logprobs"].data]
            assert len(lp) == d.model_input.length
            assert all(math.isfinite(x) and x <= 1e-6 for x in lp), lp

    @pytest.mark.parametrize("method", ["forward", "forward_backward"])
    @pytest.mark.parametrize("loss_fn", ["cross_entropy", "importance_sampling", "ppo"])
    def test_loss_sum_matches_reference_formula(
        self,
        client: TrainingClient,
        vocab_size: int,
        seq_len: int,
        method: str,
        loss_fn: str,
        loss_rtol: float,
        loss_atol: float,
        result_timeout: float,
    ) -> None:
        rng = random.Random(7)
        seqs = make_sequences(vocab_size, 3, seq_len, seed=5)
        base = [ce_datum(s) for s in seqs]
        model_lp = logprobs_of(client.forward(base, "cross_entropy").result(timeout=result_timeout))
        config: dict[str, float] | None = None
        if loss_fn == "cross_entropy":
            data = [
                ce_datum(s, [rng.choice([0.0, 1.0, 0.5, 2.0]) for _ in range(len(s) - 1)])
                for s in seqs
            ]
        else:
            # Sampler logprobs near the model's, so ratios straddle the clip range.
            data = [
                rl_datum(
                    s,
                    [x + rng.uniform(-0.3, 0.3) for x in lp],
                    [rng.uniform(-1.0, 1.0) for _ in lp],
                )
                for s, lp in zip(seqs, model_lp, strict=True)
            ]
            if loss_fn == "ppo":
                config = dict(PPO_CONFIG)
        out = getattr(client, method)(data, loss_fn, config).result(timeout=result_timeout)
        expected = 0.0
        for d, lp in zip(data, logprobs_of(out), strict=True):
            inp = d.loss_fn_inputs
            if loss_fn == "cross_entropy":
                expected += ref.cross_entropy(lp, inp["weights"].data)
            elif loss_fn == "importance_sampling":
                expected += ref.importance_sampling(
                    lp, inp["logprobs"].data, inp["advantages"].data
                )
            else:
                lo, hi = ref.clip_thresholds(config)
                expected += ref.ppo(lp, inp["logprobs"].data, inp["advantages"].data, lo, hi)
        got = float(out.metrics["loss:sum"])
        assert got == pytest.approx(expected, rel=loss_rtol, abs=loss_atol)

    # -- weights ----------------------------------------------------------------------

    def test_forward_does_not_change_weights(
        self,
        client: TrainingClient,
        batch: list[Datum],
        restore_atol: float,
        result_timeout: float,
    ) -> None:
        a = client.forward(batch, "cross_entropy").result(timeout=result_timeout)
        b = client.forward(batch, "cross_entropy").result(timeout=result_timeout)
        assert_close_lists(flat(logprobs_of(a)), flat(logprobs_of(b)), restore_atol)

    def test_training_steps_reduce_cross_entropy(
        self,
        client: TrainingClient,
        batch: list[Datum],
        adam_params: AdamParams,
        train_steps: int,
        logprob_atol: float,
        result_timeout: float,
    ) -> None:
        before = client.forward(batch, "cross_entropy").result(timeout=result_timeout)
        for _ in range(train_steps):
            client.forward_backward(batch, "cross_entropy").result(timeout=result_timeout)
            client.optim_step(adam_params).result(timeout=result_timeout)
        after = client.forward(batch, "cross_entropy").result(timeout=result_timeout)
        changed = max(
            abs(x - y)
            for x, y in zip(flat(logprobs_of(before)), flat(logprobs_of(after)), strict=True)
        )
        assert changed > logprob_atol, "optim_step did not change the weights"
        assert ce_total(after, batch) < ce_total(before, batch)

    def test_calls_execute_in_submission_order(
        self,
        client: TrainingClient,
        batch: list[Datum],
        adam_params: AdamParams,
        logprob_atol: float,
        result_timeout: float,
    ) -> None:
        # Submit everything before awaiting anything (the pipelining pattern).
        f1 = client.forward_backward(batch, "cross_entropy")
        f2 = client.optim_step(adam_params)
        f3 = client.forward_backward(batch, "cross_entropy")
        o3 = f3.result(timeout=result_timeout)
        o1 = f1.result(timeout=result_timeout)
        f2.result(timeout=result_timeout)
        changed = max(
            abs(x - y) for x, y in zip(flat(logprobs_of(o1)), flat(logprobs_of(o3)), strict=True)
        )
        assert changed > logprob_atol, "the third call did not see the optimiser step"
        assert ce_total(o3, batch) < ce_total(o1, batch)

    def test_save_then_load_state_restores_weights_and_optimizer(
        self,
        client: TrainingClient,
        batch: list[Datum],
        adam_params: AdamParams,
        restore_atol: float,
        result_timeout: float,
    ) -> None:
        def step() -> None:
            client.forward_backward(batch, "cross_entropy").result(timeout=result_timeout)
            client.optim_step(adam_params).result(timeout=result_timeout)

        def lp() -> list[float]:
            out = client.forward(batch, "cross_entropy").result(timeout=result_timeout)
            return flat(logprobs_of(out))

        step()
        path = (
            client.save_state("contract-restore", {"note": "x"}).result(timeout=result_timeout).path
        )
        saved = lp()
        step()
        after_one = lp()
        step()
        assert lp() != saved
        client.load_state(path).result(timeout=result_timeout)
        assert_close_lists(lp(), saved, restore_atol)
        # The optimiser state came back too: the next step lands where it did before.
        step()
        assert_close_lists(lp(), after_one, restore_atol)

    # -- validation -------------------------------------------------------------------

    @pytest.mark.parametrize("case", ["missing_weights", "misaligned", "unknown_loss_fn", "empty"])
    @pytest.mark.parametrize("method", ["forward", "forward_backward"])
    def test_bad_input_raises_value_error(
        self,
        client: TrainingClient,
        vocab_size: int,
        case: str,
        method: str,
        result_timeout: float,
    ) -> None:
        seq = make_sequences(vocab_size, 1, 6, seed=9)[0]
        loss_fn = "cross_entropy"
        data: list[Datum]
        if case == "missing_weights":
            targets = TensorData(tuple(seq[1:]), "int64")
            data = [Datum(ModelInput.from_ints(seq[:-1]), {"target_tokens": targets})]
        elif case == "misaligned":
            data = [ce_datum(seq, [1.0] * (len(seq) - 3))]
        elif case == "unknown_loss_fn":
            data = [ce_datum(seq)]
            loss_fn = "no_such_loss"
        else:
            data = []
        fn = getattr(client, method)
        call_expecting_value_error(lambda: fn(data, loss_fn), result_timeout)
        # The client still works afterwards.
        ok = fn([ce_datum(seq)], "cross_entropy").result(timeout=result_timeout)
        assert len(ok.loss_fn_outputs) == 1

    # -- info and sampling ------------------------------------------------------------

    def test_get_info(self, client: TrainingClient) -> None:
        info = client.get_info()
        assert isinstance(info, GetInfoResponse)
        assert isinstance(info.model_id, str) and info.model_id

    def test_sampling_client_agrees_with_forward(
        self,
        client: TrainingClient,
        batch: list[Datum],
        vocab_size: int,
        seq_len: int,
        adam_params: AdamParams,
        logprob_atol: float,
        result_timeout: float,
    ) -> None:
        client.forward_backward(batch, "cross_entropy").result(timeout=result_timeout)
        client.optim_step(adam_params).result(timeout=result_timeout)
        sampler = client.save_weights_and_get_sampling_client("contract-agree")
        assert isinstance(sampler, SamplingClient)
        seq = make_sequences(vocab_size, 1, seq_len, seed=11)[0]
        fwd = client.forward([ce_datum(seq)], "cross_entropy").result(timeout=result_timeout)
        expected = logprobs_of(fwd)[0]
        got = sampler.compute_logprobs(ModelInput.from_ints(seq)).result(timeout=result_timeout)
        assert len(got) == len(seq)
        assert got[0] is None
        assert_close_lists([float(x) for x in got[1:] if x is not None], expected, logprob_atol)
        # The sampler is a snapshot: training further does not move it.
        client.forward_backward(batch, "cross_entropy").result(timeout=result_timeout)
        client.optim_step(adam_params).result(timeout=result_timeout)
        again = sampler.compute_logprobs(ModelInput.from_ints(seq)).result(timeout=result_timeout)
        assert_close_lists(
            [float(x) for x in again[1:] if x is not None],
            [float(x) for x in got[1:] if x is not None],
            logprob_atol,
        )

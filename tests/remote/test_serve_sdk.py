"""The real tinker SDK against a real ``kitchen serve`` subprocess on loopback."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
tinker = pytest.importorskip("tinker")
httpx = pytest.importorskip("httpx")

from tinker import types  # noqa: E402

from tests.remote.server import TOKEN, Server, backend_args  # noqa: E402

os.environ.setdefault("TINKER_TELEMETRY", "0")

MODEL = "noop-tiny"
LR = 0.05


def _datum(tokens: list[int]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "weights": [1.0] * (len(tokens) - 1),
        },
    )


BATCHES = [
    [_datum([1, 2, 3, 4, 5, 6, 7, 8]), _datum([3, 5, 7, 9, 11, 13])],
    [_datum([2, 4, 6, 8, 10, 12, 14]), _datum([1, 3, 5, 7, 9])],
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Server(tmp_path_factory.mktemp("serve") / "data") as srv:
        yield srv


_opened: list[Any] = []


def _service(srv: Server, key: str = TOKEN) -> Any:
    sc = tinker.ServiceClient(base_url=srv.url, api_key=key)
    _opened.append(sc)
    return sc


def _close_all() -> None:
    """Finish every SDK session this test opened, while its server is still up: a client
    left open keeps heartbeating (and logging failures) after the server is gone."""
    while _opened:
        try:
            _opened.pop().close("success").result(timeout=10)
        except Exception:
            pass  # a session on a server that was killed is already gone


@pytest.fixture(autouse=True)
def _close_sessions() -> Any:
    yield
    _close_all()


def _train(tc: Any, steps: int, start: int = 0) -> list[float]:
    """Pipelined SFT: submit step N+1 before awaiting step N."""
    futures = []
    for i in range(start, start + steps):
        fb = tc.forward_backward(BATCHES[i % len(BATCHES)], "cross_entropy")
        opt = tc.optim_step(types.AdamParams(learning_rate=LR))
        futures.append((fb, opt))
    losses = []
    for fb, opt in futures:
        out = fb.result(timeout=60)
        opt.result(timeout=60)
        losses.append(out.metrics["loss:sum"])
    return losses


def test_sft_steps_reduce_loss_and_match_in_process(server: Server, tmp_path: Path) -> None:
    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=7).result(timeout=60)
    assert tc.get_info().model_data.model_name == MODEL
    remote = _train(tc, 6)
    assert remote[-2] < remote[0] and remote[-1] < remote[1], remote

    # The same backend in process, same seed, same data: the server adds no numerics.
    from kitchen.adapters.remote import convert
    from kitchen.ports.types import AdamParams
    from kitchen.server.backends import load_backend

    args = dict(zip(backend_args()[::2], backend_args()[1::2], strict=True))
    backend = load_backend(
        args["--backend"], model_spec=args.get("--model-spec"), model_name=args.get("--model-name")
    )
    local = backend.create_training(base_model=MODEL, lora_rank=4, seed=7, state_dir=tmp_path)
    expected = []
    for i in range(6):
        data = [_kitchen(d, convert) for d in BATCHES[i % len(BATCHES)]]
        fb = local.forward_backward(data, "cross_entropy")
        local.optim_step(AdamParams(learning_rate=LR)).result()
        expected.append(fb.result().metrics["loss:sum"])
    assert remote == pytest.approx(expected, rel=1e-4, abs=1e-5)
    sc.close("success").result(timeout=30)


def _kitchen(d: types.Datum, convert: Any) -> Any:
    from kitchen.ports.types import Datum, TensorData

    return Datum(
        convert.model_input_from_sdk(d.model_input),
        {k: TensorData(tuple(v.tolist()), v.dtype) for k, v in d.loss_fn_inputs.items()},
    )


def test_forward_matches_per_datum_logprobs(server: Server) -> None:
    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=1).result(timeout=60)
    out = tc.forward(BATCHES[0], "cross_entropy").result(timeout=60)
    assert len(out.loss_fn_outputs) == 2
    lps = [o["logprobs"].tolist() for o in out.loss_fn_outputs]
    assert [len(x) for x in lps] == [7, 5]
    assert -sum(sum(x) for x in lps) == pytest.approx(out.metrics["loss:sum"], rel=1e-4)


def test_sampling(server: Server) -> None:
    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=3).result(timeout=60)
    _train(tc, 2)
    sampler = tc.save_weights_and_get_sampling_client().result(timeout=60)
    prompt = types.ModelInput.from_ints([1, 2, 3])
    params = types.SamplingParams(max_tokens=5, seed=11, temperature=1.0)
    a = sampler.sample(prompt, 3, params).result(timeout=60)
    b = sampler.sample(prompt, 3, params).result(timeout=60)
    assert len(a.sequences) == 3
    assert all(1 <= len(s.tokens) <= 5 for s in a.sequences)
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]  # same seed
    lps = sampler.compute_logprobs(prompt).result(timeout=60)
    assert lps[0] is None and all(isinstance(x, float) and x <= 0 for x in lps[1:])

    base = sc.create_sampling_client(base_model=MODEL).result(timeout=60)
    assert base.sample(prompt, 1, params).result(timeout=60).sequences


def test_save_load_round_trip(server: Server) -> None:
    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=5).result(timeout=60)
    _train(tc, 2)
    saved = tc.save_state("round-trip", user_metadata={"step": "2"}).result(timeout=60)
    assert saved.path.startswith("tinker://") and saved.path.endswith("/weights/round-trip")
    after_save = tc.forward(BATCHES[0], "cross_entropy").result(timeout=60).metrics["loss:sum"]
    next_losses = _train(tc, 2, start=2)

    restored = sc.create_training_client_from_state_with_optimizer(saved.path).result(timeout=60)
    again = restored.forward(BATCHES[0], "cross_entropy").result(timeout=60).metrics["loss:sum"]
    assert again == pytest.approx(after_save, rel=1e-6)
    # Optimizer state came back too: the next steps are identical.
    assert _train(restored, 2, start=2) == pytest.approx(next_losses, rel=1e-6)

    sampler_path = tc.save_weights_for_sampler("for-sampling").result(timeout=60).path
    assert "/sampler_weights/" in sampler_path
    sampler = sc.create_sampling_client(model_path=sampler_path).result(timeout=60)
    assert (
        sampler.sample(
            types.ModelInput.from_ints([1, 2]), 1, types.SamplingParams(max_tokens=3, seed=0)
        )
        .result(timeout=60)
        .sequences
    )

    listing = httpx.get(
        f"{server.url}/api/v1/training_runs/{tc.model_id}/checkpoints",
        headers={"X-API-Key": TOKEN},
    ).json()
    paths = {c["tinker_path"] for c in listing["checkpoints"]}
    assert saved.path in paths and sampler_path in paths


def test_wrong_token_refused(server: Server) -> None:
    r = httpx.post(f"{server.url}/api/v1/create_session", json={}, timeout=10)
    assert r.status_code == 401
    r = httpx.post(
        f"{server.url}/api/v1/create_session", json={}, headers={"X-API-Key": "tml-wrong"}
    )
    assert r.status_code == 401
    sc = _service(server, key="tml-not-the-right-token")
    with pytest.raises(tinker.AuthenticationError):
        sc.create_lora_training_client(base_model=MODEL, rank=4).result(timeout=60)


def test_traversal_names_refused(server: Server) -> None:
    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=0).result(timeout=60)
    outside = server.data_dir.parent
    before = set(outside.rglob("*"))
    for bad in ("../escape", "../../etc/passwd", "/abs", "a/b", ".hidden", ".."):
        with pytest.raises(tinker.RequestFailedError, match="refused"):
            tc.save_state(bad).result(timeout=60)
    with pytest.raises(tinker.RequestFailedError, match="refused"):
        tc.save_weights_for_sampler("../escape").result(timeout=60)
    created = {p for p in set(outside.rglob("*")) - before if server.data_dir not in p.parents}
    assert not created, created
    # A refused request does not wedge the model: later requests still run, in order.
    assert tc.forward(BATCHES[0], "cross_entropy").result(timeout=60).metrics["loss:sum"] > 0
    # Loading from a path outside the data dir is refused as well.
    for bad_path in ("tinker://../weights/x", "tinker://a/weights/../../x", "file:///etc/passwd"):
        r = httpx.post(
            f"{server.url}/api/v1/create_sampling_session",
            json={"session_id": "nope", "sampling_session_seq_id": 0, "model_path": bad_path},
            headers={"X-API-Key": TOKEN},
        )
        assert r.status_code in (400, 404), r.text


def test_oversized_body_refused(tmp_path: Path) -> None:
    args = [*backend_args(), "--max-body-mb", "0.05", "--seq-gap-timeout", "1"]
    with Server(tmp_path / "data", args) as srv:
        big = b"\0" * 200_000
        r = httpx.post(
            f"{srv.url}/api/v1/forward_backward",
            content=big,
            headers={"X-API-Key": TOKEN, "Content-Type": "application/x-protobuf"},
        )
        assert r.status_code == 413
        assert "limit" in r.json()["detail"]
        # Through the SDK: one datum larger than the limit fails cleanly, nothing hangs.
        sc = _service(srv)
        tc = sc.create_lora_training_client(base_model=MODEL, rank=4).result(timeout=60)
        n = 20_000
        huge = types.Datum(
            model_input=types.ModelInput.from_ints([1] * n),
            loss_fn_inputs={"target_tokens": [2] * n, "weights": [1.0] * n},
        )
        with pytest.raises(tinker.APIStatusError) as info:
            tc.forward_backward([huge], "cross_entropy").result(timeout=60)
        assert info.value.status_code == 413
        # Small requests still work.
        assert tc.forward(BATCHES[0], "cross_entropy").result(timeout=60).metrics
        _close_all()


def test_kill_restart_resume_loses_no_completed_step(tmp_path: Path) -> None:
    steps, kill_after = 6, 3
    data_dir = tmp_path / "data"

    # Reference: an uninterrupted run.
    with Server(tmp_path / "ref") as ref:
        sc = _service(ref)
        tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=9).result(timeout=60)
        reference = [_train(tc, 1, start=i)[0] for i in range(steps)]
        _close_all()

    srv = Server(data_dir).start()
    try:
        sc = _service(srv)
        tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=9).result(timeout=60)
        completed: list[tuple[int, str]] = []
        losses = []
        for i in range(kill_after):
            losses += _train(tc, 1, start=i)
            completed.append((i + 1, tc.save_state(f"step-{i + 1}").result(timeout=60).path))
        # Step kill_after + 1 is in flight when the server dies.
        tc.forward_backward(BATCHES[kill_after % len(BATCHES)], "cross_entropy")
        srv.kill()
        srv = Server(data_dir, port=srv.port).start()  # same address, same data dir
        sc2 = _service(srv)
        # Every save that completed before the crash is still there.
        for _, path in completed:
            sc2.create_training_client_from_state_with_optimizer(path).result(timeout=60)
        step, path = completed[-1]
        tc2 = sc2.create_training_client_from_state_with_optimizer(path).result(timeout=60)
        losses += _train(tc2, steps - step, start=step)
    finally:
        _close_all()
        srv.stop()
    assert step == kill_after
    assert losses == pytest.approx(reference, rel=1e-6)
    # No torn checkpoint records were left behind.
    for rec in (data_dir / "checkpoints").rglob("*.json"):
        json.loads(rec.read_text())
    assert not any(p.name.endswith(".tmp") for p in data_dir.rglob("*"))
    assert math.isfinite(losses[-1])

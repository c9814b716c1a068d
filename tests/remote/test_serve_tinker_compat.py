"""Tinker API behaviours the cookbook relies on, through the real SDK against a real
``kitchen serve`` (noop backend): optimizer-less loads, optim metrics, REST run/checkpoint
endpoints, user_metadata, top-k prompt logprobs and untempered sampled logprobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
tinker = pytest.importorskip("tinker")

from tinker import types  # noqa: E402

from tests.remote.server import TOKEN, Server  # noqa: E402
from tests.remote.test_serve_sdk import BATCHES, LR, _close_all, _kitchen, _service, _train  # noqa: E402

os.environ.setdefault("TINKER_TELEMETRY", "0")

MODEL = "noop-tiny"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Server(tmp_path_factory.mktemp("serve-compat") / "data") as srv:
        yield srv
        _close_all()


@pytest.fixture(autouse=True)
def _close_sessions() -> Any:
    yield
    _close_all()


def _rest(srv: Server) -> Any:
    return tinker.RestClient(base_url=srv.url, api_key=TOKEN)


def test_optim_step_metrics_have_no_step_counter(server: Server) -> None:
    tc = _service(server).create_lora_training_client(base_model=MODEL, rank=4).result(60)
    tc.forward_backward(BATCHES[0], "cross_entropy").result(60)
    out = tc.optim_step(types.AdamParams(learning_rate=LR)).result(60)
    assert out.metrics is not None
    assert "step" not in out.metrics  # it would overwrite the cookbook's own step numbers
    assert out.metrics["grad_norm"] > 0 and out.metrics["learning_rate"] == LR


def test_load_without_optimizer_starts_a_fresh_adam(server: Server) -> None:
    from kitchen.adapters.noop import NoopTrainingClient
    from kitchen.adapters.remote import convert
    from kitchen.ports.types import AdamParams
    from kitchen.server.storage import CheckpointStore

    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=2).result(60)
    _train(tc, 3)
    path = tc.save_state("mid").result(60).path

    with_opt = sc.create_training_client_from_state_with_optimizer(path).result(60)
    weights_only = sc.create_training_client_from_state(path).result(60)
    resumed = _train(with_opt, 2, start=3)
    fresh = _train(weights_only, 2, start=3)
    assert resumed != pytest.approx(fresh, rel=1e-9)

    # In process: the same weights with a fresh AdamW give exactly the weights-only run.
    ckpt = CheckpointStore(server.data_dir).resolve(path)
    local = NoopTrainingClient(model_name=MODEL, vocab_size=64, seed=2)
    local.load_weights(ckpt.adapter_path).result()
    expected = []
    for i in range(3, 5):
        fb = local.forward_backward([_kitchen(d, convert) for d in BATCHES[i % 2]], "cross_entropy")
        local.optim_step(AdamParams(learning_rate=LR)).result()
        expected.append(fb.result().metrics["loss:sum"])
    assert fresh == pytest.approx(expected, rel=1e-6)


def test_training_runs_checkpoints_and_user_metadata(server: Server) -> None:
    sc = _service(server)
    meta = {"owner": "alice", "purpose": "compat"}
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, user_metadata=meta).result(60)
    _train(tc, 1)
    state = tc.save_state("s1", user_metadata={"step": "1"}).result(60).path
    sampler = tc.save_weights_for_sampler("w1").result(60).path

    rc = _rest(server)
    run = rc.get_training_run(tc.model_id).result(60)
    assert run.training_run_id == tc.model_id
    assert run.base_model == MODEL and run.is_lora and run.lora_rank == 4
    assert run.user_metadata == meta
    assert run.last_checkpoint is not None and run.last_checkpoint.tinker_path == state
    assert run.last_sampler_checkpoint is not None
    assert run.last_sampler_checkpoint.tinker_path == sampler
    assert rc.get_training_run_by_tinker_path(state).result(60).training_run_id == tc.model_id

    listed = rc.list_training_runs(limit=100).result(60)
    assert tc.model_id in {r.training_run_id for r in listed.training_runs}
    assert listed.cursor.total_count >= len(listed.training_runs) >= 1
    page = rc.list_training_runs(limit=1, offset=0).result(60)
    assert len(page.training_runs) == 1 and page.training_runs[0].training_run_id == tc.model_id

    cks = {c.tinker_path: c for c in rc.list_checkpoints(tc.model_id).result(60).checkpoints}
    assert cks[state].user_metadata == {"step": "1"} and cks[state].checkpoint_type == "training"
    assert cks[sampler].checkpoint_type == "sampler"

    # Delete: gone from the listing, no longer loadable, its files removed.
    rc.delete_checkpoint_from_tinker_path(state).result(60)
    left = {c.tinker_path for c in rc.list_checkpoints(tc.model_id).result(60).checkpoints}
    assert left == {sampler}
    with pytest.raises(Exception, match="not found"):
        sc.create_training_client_from_state(state).result(60)
    assert not list((server.data_dir / "models" / tc.model_id / "state").glob("s1*"))
    with pytest.raises(tinker.NotFoundError):
        rc.delete_checkpoint_from_tinker_path(state).result(60)
    with pytest.raises(tinker.NotFoundError):
        rc.get_training_run("nosuchsession:train:0").result(60)


def test_topk_prompt_logprobs_match_the_model(server: Server) -> None:
    from kitchen.adapters.noop import NoopSamplingClient
    from kitchen.ports.types import ModelInput

    sc = _service(server)
    sampler = sc.create_sampling_client(base_model=MODEL).result(60)
    prompt = [5, 9, 2, 33, 7]
    resp = sampler.sample(
        types.ModelInput.from_ints(prompt),
        1,
        types.SamplingParams(max_tokens=2, seed=1),
        include_prompt_logprobs=True,
        topk_prompt_logprobs=3,
    ).result(60)
    topk = resp.topk_prompt_logprobs
    assert topk is not None and len(topk) == len(prompt) and topk[0] is None
    local = NoopSamplingClient(vocab_size=64, seed=0)
    want = local.topk_prompt_logprobs(ModelInput.from_ints(prompt), 3).result()
    for got, ref in zip(topk[1:], want[1:], strict=True):
        assert ref is not None and [t for t, _ in got] == [t for t, _ in ref]
        assert [lp for _, lp in got] == pytest.approx([lp for _, lp in ref], abs=1e-5)
        assert got[0][1] >= got[1][1] >= got[2][1]
    # The actual prompt tokens' logprobs never exceed the top-1 at their position.
    for i in range(1, len(prompt)):
        assert resp.prompt_logprobs[i] <= topk[i][0][1] + 1e-6


def test_sampled_logprobs_untempered_through_the_server(server: Server) -> None:
    sc = _service(server)
    sampler = sc.create_sampling_client(base_model=MODEL).result(60)
    prompt = [3, 4, 5]
    seq = (
        sampler.sample(
            types.ModelInput.from_ints(prompt),
            1,
            types.SamplingParams(max_tokens=6, seed=4, temperature=0.5),
        )
        .result(60)
        .sequences[0]
    )
    full = sampler.compute_logprobs(types.ModelInput.from_ints(prompt + list(seq.tokens)))
    want = full.result(60)[len(prompt) :]
    assert seq.logprobs == pytest.approx(want, abs=1e-5)


def test_sampler_checkpoint_and_weights_only_paths(server: Server, tmp_path: Path) -> None:
    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=8).result(60)
    _train(tc, 2)
    path = tc.save_weights_for_sampler("sw").result(60).path
    live = tc.save_weights_and_get_sampling_client().result(60)
    from_ckpt = sc.create_sampling_client(model_path=path).result(60)
    prompt = types.ModelInput.from_ints([1, 2, 3])
    a = live.compute_logprobs(prompt).result(60)
    b = from_ckpt.compute_logprobs(prompt).result(60)
    assert a == pytest.approx(b, abs=1e-6)


@pytest.mark.parametrize("loss_fn", ["importance_sampling", "ppo", "cispo", "dro", "gspo"])
def test_every_policy_loss_over_the_sdk_matches_in_process(server: Server, loss_fn: str) -> None:
    from kitchen.adapters.noop import NoopTrainingClient
    from kitchen.adapters.remote import convert

    tc = _service(server).create_lora_training_client(base_model=MODEL, rank=4, seed=6).result(60)
    tokens = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10]]
    data = []
    for i, seq in enumerate(tokens):
        n = len(seq) - 1
        inputs: dict[str, Any] = {
            "target_tokens": seq[1:],
            "logprobs": [-4.2 + 0.3 * ((j + i) % 3) for j in range(n)],
            "advantages": [1.0 if (i + j) % 2 else -0.5 for j in range(n)],
        }
        if loss_fn == "gspo":
            inputs["sequence_ratio_mask"] = [0.0] + [1.0] * (n - 1)
        data.append(
            types.Datum(model_input=types.ModelInput.from_ints(seq[:-1]), loss_fn_inputs=inputs)
        )
    cfg = {"beta": 0.2} if loss_fn == "dro" else None
    remote = tc.forward_backward(data, loss_fn, cfg).result(60).metrics["loss:sum"]
    local = NoopTrainingClient(model_name=MODEL, vocab_size=64, seed=6)
    want = local.forward_backward([_kitchen(d, convert) for d in data], loss_fn, cfg).result()
    assert remote == pytest.approx(want.metrics["loss:sum"], rel=1e-5)
    with pytest.raises(Exception, match="stable_reinforce' is not supported"):
        tc.forward_backward(data, "stable_reinforce").result(60)


def test_weights_info_user_checkpoints_ttl_and_sampler_info(server: Server) -> None:
    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4).result(60)
    path = tc.save_state("info").result(60).path
    rc = sc.create_rest_client()
    info = rc.get_weights_info_by_tinker_path(path).result(60)
    assert info.base_model == MODEL and info.is_lora and info.lora_rank == 4
    mine = rc.list_user_checkpoints(limit=1000).result(60)
    assert path in {c.tinker_path for c in mine.checkpoints}
    assert mine.cursor is not None and mine.cursor.total_count >= 1
    rc.set_checkpoint_ttl_from_tinker_path(path, 3600).result(60)  # accepted, not enforced
    with pytest.raises(tinker.NotFoundError):
        rc.set_checkpoint_ttl_from_tinker_path(path.replace("/info", "/nope"), 60).result(60)
    sampler_path = tc.save_weights_for_sampler("info-s").result(60).path
    sampler = tc.create_sampling_client(sampler_path).result(60)
    assert sampler.get_base_model() == MODEL
    handle = sampler.get_sampler_handle()
    got = rc.get_sampler(sampler._sampling_session_id).result(60)
    assert handle  # an opaque handle another process can rebuild the client from
    assert got.base_model == MODEL and got.model_path == sampler_path


def test_capabilities_and_the_legacy_load_state_calls(server: Server) -> None:
    sc = _service(server)
    assert MODEL in {m.model_name for m in sc.get_server_capabilities().supported_models}
    rc = _rest(server)
    assert MODEL in {m.model_name for m in rc.get_server_capabilities().result(60).supported_models}

    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=3).result(60)
    _train(tc, 2)
    path = tc.save_state("legacy").result(60).path
    after = tc.forward(BATCHES[0], "cross_entropy").result(60).metrics["loss:sum"]
    nxt = _train(tc, 2, start=2)
    with pytest.warns(Warning):  # the SDK deprecates TrainingClient.load_state*
        other = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=9).result(60)
        other.load_state_with_optimizer(path).result(60)
    assert other.forward(BATCHES[0], "cross_entropy").result(60).metrics[
        "loss:sum"
    ] == pytest.approx(after, rel=1e-6)
    assert _train(other, 2, start=2) == pytest.approx(nxt, rel=1e-6)
    with pytest.warns(Warning):
        weights_only = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=9).result(60)
        weights_only.load_state(path).result(60)
    assert _train(weights_only, 2, start=2) != pytest.approx(nxt, rel=1e-9)

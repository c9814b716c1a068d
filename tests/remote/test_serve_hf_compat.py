"""``kitchen serve --backend hf`` on a tiny local model directory (from-config Llama plus a
BPE tokenizer trained on the spot), driven by the real tinker SDK: string stop sequences
through the model's tokenizer, sampling from saved sampler weights, weights-only loads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.hf
pytest.importorskip("torch")
pytest.importorskip("fastapi")
tinker = pytest.importorskip("tinker")

from tinker import types  # noqa: E402

from tests.remote.server import Server  # noqa: E402
from tests.remote.test_serve_sdk import BATCHES, LR, _close_all, _kitchen, _service, _train  # noqa: E402
from tests.tiny_model import make_model_dir  # noqa: E402

os.environ.setdefault("TINKER_TELEMETRY", "0")
MODEL = "tiny-local"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("tiny-local-model"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Any:
    spec = {"path": str(model_dir), "mode": "lora"}
    args = ["--backend", "hf", "--model-spec", json.dumps(spec), "--model-name", MODEL]
    with Server(tmp_path_factory.mktemp("serve-hf-compat") / "data", args=args) as srv:
        yield srv
        _close_all()


@pytest.fixture(autouse=True)
def _close_sessions() -> Any:
    yield
    _close_all()


def test_string_stop_sequences_use_the_models_tokenizer(server: Server, model_dir: Path) -> None:
    from kitchen.adapters.hf.tokenizer import HfTokenizer

    tok = HfTokenizer.load(model_dir)
    sampler = _service(server).create_sampling_client(base_model=MODEL).result(120)
    prompt = types.ModelInput.from_ints(tok.encode("the cat"))
    free = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=16, seed=5)).result(120)
    tokens = list(free.sequences[0].tokens)
    # A stop string taken from the free-running text: the first character it decodes to.
    k = next(i for i in range(1, len(tokens) + 1) if tok.decode(tokens[:i]).strip())
    stop = tok.decode(tokens[:k]).strip()[-1]
    j = next(i for i in range(1, len(tokens) + 1) if stop in tok.decode(tokens[:i]))
    stopped = sampler.sample(
        prompt, 1, types.SamplingParams(max_tokens=16, seed=5, stop=[stop])
    ).result(120)
    seq = stopped.sequences[0]
    assert list(seq.tokens) == tokens[:j]  # same seed: the same draw, cut at the stop
    assert seq.stop_reason == "stop"


def test_sampler_weights_load_for_sampling(server: Server) -> None:
    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=1).result(120)
    _train(tc, 2)
    path = tc.save_weights_for_sampler("sw").result(120).path
    live = tc.save_weights_and_get_sampling_client().result(120)
    from_ckpt = sc.create_sampling_client(model_path=path).result(120)
    prompt = types.ModelInput.from_ints([5, 6, 7, 8])
    want = live.compute_logprobs(prompt).result(120)
    got = from_ckpt.compute_logprobs(prompt).result(120)
    assert got[1:] == pytest.approx(want[1:], abs=1e-5)
    base = sc.create_sampling_client(base_model=MODEL).result(120)
    assert base.compute_logprobs(prompt).result(120)[1:] != pytest.approx(want[1:], abs=1e-5)
    # A training client can start from sampler weights too (weights only).
    again = sc.create_training_client_from_state(path).result(120)
    out = again.forward(BATCHES[0], "cross_entropy").result(120).metrics["loss:sum"]
    ref = tc.forward(BATCHES[0], "cross_entropy").result(120).metrics["loss:sum"]
    assert out == pytest.approx(ref, rel=1e-5)


def test_weights_only_load_has_a_fresh_optimizer(server: Server, model_dir: Path) -> None:
    from kitchen.adapters.hf.training import HfTrainingClient
    from kitchen.adapters.remote import convert
    from kitchen.ports.types import AdamParams
    from kitchen.server.storage import CheckpointStore

    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=2).result(120)
    _train(tc, 2)
    path = tc.save_state("mid").result(120).path
    resumed = _train(sc.create_training_client_from_state_with_optimizer(path).result(120), 2, 2)
    fresh = _train(sc.create_training_client_from_state(path).result(120), 2, 2)
    assert resumed != pytest.approx(fresh, rel=1e-7)

    ckpt = CheckpointStore(server.data_dir).resolve(path)
    local = HfTrainingClient(
        {"path": str(model_dir), "mode": "lora", "lora": {"rank": 4}, "seed": 2}
    )
    local.load_weights(ckpt.adapter_path).result(120)
    expected = []
    for i in range(2, 4):
        fb = local.forward_backward([_kitchen(d, convert) for d in BATCHES[i % 2]], "cross_entropy")
        local.optim_step(AdamParams(learning_rate=LR)).result(120)
        expected.append(fb.result(120).metrics["loss:sum"])
    local.close()
    assert fresh == pytest.approx(expected, rel=1e-5)


def test_topk_prompt_logprobs_on_hf(server: Server) -> None:
    sampler = _service(server).create_sampling_client(base_model=MODEL).result(120)
    prompt = [9, 40, 41, 42, 43]
    resp = sampler.sample(
        types.ModelInput.from_ints(prompt),
        1,
        types.SamplingParams(max_tokens=1, seed=0),
        include_prompt_logprobs=True,
        topk_prompt_logprobs=4,
    ).result(120)
    topk = resp.topk_prompt_logprobs
    assert topk is not None and topk[0] is None and len(topk) == len(prompt)
    for i in range(1, len(prompt)):
        lps = [lp for _, lp in topk[i]]
        assert len(lps) == 4 and lps == sorted(lps, reverse=True)
        assert resp.prompt_logprobs[i] <= lps[0] + 1e-5
        ids = [t for t, _ in topk[i]]
        if prompt[i] in ids:
            assert resp.prompt_logprobs[i] == pytest.approx(lps[ids.index(prompt[i])], abs=1e-5)


def test_clients_hand_out_the_served_models_tokenizer(
    server: Server, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kitchen.adapters.hf.tokenizer import HfTokenizer

    # SamplingClient.get_tokenizer resolves the base model's name on the client, like a hub
    # id: a local directory of that name is what it finds.
    (tmp_path / MODEL).symlink_to(model_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    want = HfTokenizer.load(model_dir).encode("the cat sat on the mat")
    sc = _service(server)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4).result(120)
    assert tc.get_tokenizer().encode("the cat sat on the mat", add_special_tokens=False) == want
    sampler = sc.create_sampling_client(base_model=MODEL).result(120)
    assert (
        sampler.get_tokenizer().encode("the cat sat on the mat", add_special_tokens=False) == want
    )


def test_concurrent_asample_requests_get_what_they_get_alone(server: Server) -> None:
    """The server's samplers batch concurrent requests; seeded results do not change."""
    sampler = _service(server).create_sampling_client(base_model=MODEL).result(120)
    reqs = [
        (
            types.ModelInput.from_ints([5 + i, 6 + i, 7 + 2 * i][: 1 + i % 3]),
            1 + i % 3,
            types.SamplingParams(max_tokens=4 + i % 4, seed=100 + i, temperature=0.9),
        )
        for i in range(8)
    ]
    alone = [sampler.sample(p, n, sp).result(120) for p, n, sp in reqs]
    futs = [sampler.sample(p, n, sp) for p, n, sp in reqs]  # all in flight at once
    together = [f.result(120) for f in futs]
    for a, b in zip(alone, together, strict=True):
        assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
        assert [s.stop_reason for s in a.sequences] == [s.stop_reason for s in b.sequences]


def test_sdk_sessions_interleaved_on_the_shared_base_match_alone(server: Server) -> None:
    """Two SDK sessions training at once on one served model (one shared base) get the
    losses each gets alone."""
    plans = {11: [0, 1, 0], 12: [1, 1, 0]}  # seed -> the batches it trains on, in order
    sc = _service(server)

    def run(seeds: list[int]) -> dict[int, list[float]]:
        tcs = {
            s: sc.create_lora_training_client(base_model=MODEL, rank=4, seed=s).result(120)
            for s in seeds
        }
        futs: dict[int, list[Any]] = {s: [] for s in seeds}
        for step in range(3):  # every session's step submitted before any is awaited
            for s, tc in tcs.items():
                futs[s].append(tc.forward_backward(BATCHES[plans[s][step]], "cross_entropy"))
                tc.optim_step(types.AdamParams(learning_rate=LR))
        return {s: [f.result(120).metrics["loss:sum"] for f in fs] for s, fs in futs.items()}

    alone = {**run([11]), **run([12])}
    together = run([11, 12])
    assert together[11] == pytest.approx(alone[11], rel=1e-6)
    assert together[12] == pytest.approx(alone[12], rel=1e-6)
    assert alone[11] != pytest.approx(alone[12], rel=1e-3)

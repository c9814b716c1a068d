"""`kitchen serve` on the hf backend (a tiny from-config Llama) driven by the real tinker SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.hf
pytest.importorskip("torch")
pytest.importorskip("fastapi")
tinker = pytest.importorskip("tinker")

from tinker import types  # noqa: E402

from tests.remote.server import TOKEN, Server  # noqa: E402
from tests.remote.test_serve_sdk import BATCHES, LR, _kitchen, _train  # noqa: E402

SPEC = {
    "config": {
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 64,
    },
    "mode": "lora",
}
MODEL = "tiny-llama"
ARGS = ["--backend", "hf", "--model-spec", json.dumps(SPEC), "--model-name", MODEL]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Server(tmp_path_factory.mktemp("serve-hf") / "data", args=ARGS) as srv:
        yield srv


def test_hf_sft_over_the_sdk_matches_in_process_hf(server: Server, tmp_path: Path) -> None:
    from kitchen.adapters.remote import convert
    from kitchen.ports.types import AdamParams
    from kitchen.server.backends import load_backend

    sc = tinker.ServiceClient(base_url=server.url, api_key=TOKEN)
    tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=3).result(timeout=120)
    remote = _train(tc, 6)
    assert remote[-1] < remote[1] and remote[-2] < remote[0], remote

    backend = load_backend("hf", model_spec=json.dumps(SPEC), model_name=MODEL)
    local = backend.create_training(base_model=MODEL, lora_rank=4, seed=3, state_dir=tmp_path)
    expected = []
    for i in range(6):
        fb = local.forward_backward([_kitchen(d, convert) for d in BATCHES[i % 2]], "cross_entropy")
        local.optim_step(AdamParams(learning_rate=LR)).result()
        expected.append(fb.result().metrics["loss:sum"])
    assert remote == pytest.approx(expected, rel=1e-4, abs=1e-5)

    sampler = tc.save_weights_and_get_sampling_client("s").result(timeout=120)
    prompt = types.ModelInput.from_ints([1, 2, 3])
    params = types.SamplingParams(max_tokens=5, seed=11, temperature=1.0)
    a = sampler.sample(prompt, 2, params).result(timeout=120)
    b = sampler.sample(prompt, 2, params).result(timeout=120)
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
    assert all(len(s.tokens) <= 5 for s in a.sequences)
    sc.close("success").result(timeout=30)

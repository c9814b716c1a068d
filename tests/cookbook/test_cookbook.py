"""tinker-cookbook's own training entry points, unchanged, against a ``kitchen serve`` this
module starts (hf backend, a tiny local Llama with a BPE tokenizer trained on the spot).

Hub ids resolve to local directories of the same name under the working directory
(``meta-llama/Llama-3.2-1B`` for the model and tokenizer, ``HuggingFaceH4/no_robots`` for
``sl_loop``'s dataset), and the hub is offline: nothing downloads. What these tests pass in
is configuration a cookbook user passes: model name, paths, batch sizes, a toy RL task.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.hf, pytest.mark.slow]
pytest.importorskip("torch")
pytest.importorskip("fastapi")
tinker = pytest.importorskip("tinker")
pytest.importorskip("tinker_cookbook")

from tests.remote.server import TOKEN, Server  # noqa: E402
from tests.tiny_model import make_model_dir  # noqa: E402

MODEL = "meta-llama/Llama-3.2-1B"  # the cookbook picks the role_colon renderer for it
CORPUS = [
    "User: say cat\n\nAssistant: cat cat\n\nUser: say dog\n\nAssistant: dog dog",
    "the quick brown fox jumps over the lazy dog in the park on the mat.",
] * 20


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("cookbook")
    model_dir = root / MODEL
    model_dir.mkdir(parents=True)
    make_model_dir(model_dir, CORPUS)
    spec = {"path": str(model_dir), "mode": "lora"}
    args = ["--backend", "hf", "--model-spec", json.dumps(spec), "--model-name", MODEL]
    with Server(root / "data", args=args) as srv, pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for k, v in {
            "TINKER_BASE_URL": srv.url,
            "TINKER_API_KEY": TOKEN,
            "TINKER_TELEMETRY": "0",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "WANDB_MODE": "disabled",
        }.items():
            mp.setenv(k, v)
        yield root, srv


def _metrics(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (log_path / "metrics.jsonl").read_text().splitlines()]


def _checkpoints(log_path: Path) -> list[dict[str, Any]]:
    f = log_path / "checkpoints.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def _assert_resolvable(srv: Server, paths: list[str]) -> None:
    """Every checkpoint the run recorded loads back from the server."""
    sc = tinker.ServiceClient(base_url=srv.url, api_key=TOKEN)
    try:
        for p in paths:
            if "/sampler_weights/" in p:
                sc.create_sampling_client(model_path=p).result(120).compute_logprobs(
                    tinker.types.ModelInput.from_ints([1, 2, 3])
                ).result(120)
            else:
                sc.create_training_client_from_state(p).result(120)
    finally:
        sc.close("success").result(30)


def test_supervised_train(workdir: Any) -> None:
    from tinker_cookbook.supervised import train
    from tinker_cookbook.supervised.data import FromConversationFileBuilder
    from tinker_cookbook.supervised.types import ChatDatasetBuilderCommonConfig

    from tests.cookbook.toy import write_conversations

    root, srv = workdir
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=MODEL, renderer_name="role_colon", max_length=64, batch_size=4
    )
    log = root / "sl"
    cfg = train.Config(
        log_path=str(log),
        model_name=MODEL,
        recipe_name="kitchen_cookbook_test",
        renderer_name="role_colon",
        dataset_builder=FromConversationFileBuilder(
            common_config=common, file_path=str(write_conversations(root / "convs.jsonl"))
        ),
        learning_rate=1e-2,
        num_epochs=3,
        lora_rank=4,
        save_every=2,
        eval_every=0,
    )
    asyncio.run(train.main(cfg))
    rows = _metrics(log)
    assert [r["step"] for r in rows] == list(range(6))  # optim metrics never overwrite it
    assert all("grad_norm" in r for r in rows)
    assert rows[-1]["train_mean_nll"] < rows[0]["train_mean_nll"]
    ckpts = _checkpoints(log)
    assert ckpts and ckpts[-1]["name"] == "final"
    _assert_resolvable(srv, [c[k] for c in ckpts for k in ("state_path", "sampler_path") if k in c])


def _rl_config(root: Path, name: str, **overrides: Any) -> Any:
    from tinker_cookbook.rl import train

    from tests.cookbook.toy import EchoDatasetBuilder

    return train.Config(
        log_path=str(root / name),
        model_name=MODEL,
        recipe_name="kitchen_cookbook_test",
        renderer_name="role_colon",
        dataset_builder=EchoDatasetBuilder(model_name_for_tokenizer=MODEL),
        learning_rate=1e-3,
        max_tokens=8,
        lora_rank=4,
        eval_every=0,
        save_every=1,  # periodic checkpoints: sampler weights reloaded for sampling
        num_groups_to_log=0,
        **overrides,
    )


def test_rl_train_sync_with_periodic_checkpoints(workdir: Any) -> None:
    from tinker_cookbook.rl import train

    root, srv = workdir
    cfg = _rl_config(root, "rl-sync")
    asyncio.run(train.main(cfg))
    rows = _metrics(Path(cfg.log_path))
    assert len(rows) >= 3 and all("step" in r for r in rows)
    ckpts = _checkpoints(Path(cfg.log_path))
    assert len(ckpts) >= 3  # one per batch plus final
    _assert_resolvable(srv, [c["sampler_path"] for c in ckpts if "sampler_path" in c])


def test_rl_train_async(workdir: Any) -> None:
    from tinker_cookbook.rl import train

    root, srv = workdir
    # The async default loss is stable_reinforce, which kitchen does not implement (its
    # formula needs Tinker's private sampling records); ppo is the clipped alternative the
    # cookbook recommends for stale data.
    cfg = _rl_config(
        root,
        "rl-async",
        async_config=train.AsyncConfig(max_steps_off_policy=1, groups_per_batch=2, loss_fn="ppo"),
    )
    asyncio.run(train.main(cfg))
    rows = _metrics(Path(cfg.log_path))
    assert len(rows) >= 3
    ckpts = _checkpoints(Path(cfg.log_path))
    assert ckpts
    _assert_resolvable(srv, [c["sampler_path"] for c in ckpts if "sampler_path" in c])


def test_train_dpo(workdir: Any) -> None:
    from tinker_cookbook.preference import train_dpo
    from tinker_cookbook.preference.dpo_datasets import DPODatasetBuilderFromComparisons
    from tinker_cookbook.preference.preference_datasets import ComparisonBuilderFromJsonl
    from tinker_cookbook.supervised.types import ChatDatasetBuilderCommonConfig

    from tests.cookbook.toy import write_comparisons

    root, _srv = workdir
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=MODEL, renderer_name="role_colon", max_length=64, batch_size=4
    )
    log = root / "dpo"
    cfg = train_dpo.Config(
        log_path=str(log),
        model_name=MODEL,
        recipe_name="kitchen_cookbook_test",
        renderer_name="role_colon",
        dataset_builder=DPODatasetBuilderFromComparisons(
            common_config=common,
            comparison_builder=ComparisonBuilderFromJsonl(
                train_path=str(write_comparisons(root / "pairs.jsonl"))
            ),
        ),
        learning_rate=1e-3,
        lora_rank=4,
        save_every=1,
        eval_every=0,
    )
    train_dpo.main(cfg)
    rows = _metrics(log)
    assert rows and all(r.get("dpo_loss", r.get("loss")) is not None for r in rows)
    assert _checkpoints(log)


def test_sl_loop(workdir: Any) -> None:
    from tinker_cookbook.recipes import sl_loop

    from tests.cookbook.toy import write_conversations

    root, _srv = workdir
    data = root / "HuggingFaceH4" / "no_robots"  # the hub id sl_loop loads, as a local dir
    data.mkdir(parents=True)
    write_conversations(data / "train.jsonl")
    log = root / "sl-loop"
    cfg = sl_loop.Config(
        log_path=str(log), model_name=MODEL, batch_size=4, lora_rank=4, save_every=1
    )
    sl_loop.main(cfg)
    rows = _metrics(log)
    assert [r["step"] for r in rows] == [0, 1]
    assert _checkpoints(log)[-1]["name"] == "final"
    assert os.path.isdir(data)


def test_weights_download(workdir: Any, tmp_path: Path) -> None:
    """``tinker_cookbook.weights.download`` of a training checkpoint (a temporary
    age-encrypted ``save_weights_external`` export, signed URLs, decryption, deletion) and
    of an external-weights path; both load as the trained adapter."""
    from tinker_cookbook import weights

    from kitchen.adapters.hf.sampling import HfSamplingClient
    from kitchen.ports.types import ModelInput
    from tests.remote.test_serve_sdk import _train

    _root, srv = workdir
    sc = tinker.ServiceClient(base_url=srv.url, api_key=TOKEN)
    rc = tinker.RestClient(base_url=srv.url, api_key=TOKEN)
    try:
        tc = sc.create_lora_training_client(base_model=MODEL, rank=4, seed=5).result(120)
        _train(tc, 2)
        state = tc.save_state("dl").result(120).path
        external = tc.save_weights_external("plain").result(120).path
        assert external.endswith("/external_weights/plain")
        live = tc.save_weights_and_get_sampling_client().result(120)
        want = live.compute_logprobs(tinker.types.ModelInput.from_ints([5, 6, 7, 8, 9]))
        want_lps = want.result(120)[1:]

        out_a = weights.download(tinker_path=state, output_dir=str(tmp_path / "from-state"))
        out_b = weights.download(tinker_path=external, output_dir=str(tmp_path / "external"))
        for out in (out_a, out_b):
            files = {p.name for p in Path(out).iterdir()}
            assert "adapter_model.safetensors" in files
            assert not any(f.endswith(".age") for f in files)
            got = HfSamplingClient.from_weights(out).compute_logprobs(
                ModelInput.from_ints([5, 6, 7, 8, 9])
            )
            assert got.result(120)[1:] == pytest.approx(want_lps, abs=1e-5)
        # The download's temporary (encrypted) export was deleted again; ours remains.
        exported = {
            c.tinker_path
            for c in rc.list_user_checkpoints(limit=1000).result(60).checkpoints
            if c.checkpoint_type == "external"
        }
        assert exported == {external}
        # Signed URLs name one export's files and nothing else.
        urls = rc.get_external_weights_urls(external).result(60).urls
        import httpx

        url = next(iter(urls.values()))
        assert httpx.get(url, timeout=30).status_code == 200  # no API key needed
        assert httpx.get(url[: url.rindex("/")] + "/..%2F..%2Fx", timeout=30).status_code in (
            403,
            404,
        )
        forged = url.replace(url.split("/")[-2], "0" * 64)
        assert httpx.get(forged, timeout=30).status_code == 403
    finally:
        sc.close("success").result(30)


@pytest.mark.parametrize("loss_fn", ["importance_sampling", "gspo"])
def test_rl_loop(workdir: Any, loss_fn: str) -> None:
    """``recipes/rl_loop.py`` on a local ``openai/gsm8k`` (its hub id as a directory).
    Its default loss, ``stable_reinforce``, is not implemented by kitchen; these are the
    recipe's other choices."""
    pytest.importorskip("math_verify")
    from tinker_cookbook.recipes import rl_loop

    root, _srv = workdir
    data = root / "openai" / "gsm8k"
    if not data.exists():
        data.mkdir(parents=True)
        rows = [
            {"question": f"What is {i} plus {i}?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"}
            for i in range(6)
        ]
        for split, part in (("train", rows), ("test", rows[:2])):
            (data / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in part) + "\n")
        (data / "README.md").write_text(
            "---\nconfigs:\n- config_name: main\n  data_files:\n  - split: train\n"
            "    path: train.jsonl\n  - split: test\n    path: test.jsonl\n---\n"
        )
    log = root / f"rl-loop-{loss_fn}"
    cfg = rl_loop.Config(
        log_path=str(log),
        model_name=MODEL,
        batch_size=2,
        group_size=2,
        max_tokens=8,
        lora_rank=4,
        save_every=1,
        loss_fn=loss_fn,
        max_steps=3,
    )
    rl_loop.main(cfg)
    rows = _metrics(log)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all("reward/total" in r for r in rows)
    assert _checkpoints(log)[-1]["name"] == "final"

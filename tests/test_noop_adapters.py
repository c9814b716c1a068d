"""Noop-specific behaviour beyond the port contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kitchen.adapters.noop import (
    SFT_TINY,
    NoopBlobStore,
    NoopDatasetStore,
    NoopMetricsStore,
    NoopSamplingClient,
    NoopTokenizer,
    NoopTrainingClient,
)
from kitchen.errors import CheckpointError, DataError
from kitchen.ports import (
    BlobStore,
    DatasetStore,
    HubClient,
    MetricsStore,
    ModelInput,
    SamplingClient,
    SamplingParams,
    TokenizerClient,
    TrainingClient,
)
from kitchen.testing.datums import ce_datum, make_sequences


def test_adapters_satisfy_the_port_protocols(tmp_path: Path) -> None:
    from kitchen.adapters.noop import NoopHubClient

    assert isinstance(NoopTrainingClient(), TrainingClient)
    assert isinstance(NoopSamplingClient(), SamplingClient)
    assert isinstance(NoopDatasetStore(), DatasetStore)
    assert isinstance(NoopBlobStore(), BlobStore)
    assert isinstance(NoopHubClient(str(tmp_path)), HubClient)
    assert isinstance(NoopMetricsStore(), MetricsStore)
    assert isinstance(NoopTokenizer(), TokenizerClient)


def test_import_does_not_pull_torch_or_numpy() -> None:
    code = (
        "import sys, kitchen.adapters.noop; "
        "print(any(m in sys.modules for m in ('torch', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_calls_are_recorded() -> None:
    c = NoopTrainingClient()
    data = [ce_datum(s) for s in make_sequences(512, 2, 4)]
    c.forward_backward(data, "cross_entropy").result()
    c.save_state("a").result()
    assert c.calls == [
        ("forward_backward", {"n": 2, "loss_fn": "cross_entropy"}),
        ("save_state", {"name": "a"}),
    ]
    b = NoopBlobStore()
    b.put("k", b"x")
    assert b.calls[0] == ("put", {"key": "k", "size": 1})


def test_metrics_mean_and_num_tokens() -> None:
    c = NoopTrainingClient()
    seq = make_sequences(512, 1, 4)[0]
    out = c.forward([ce_datum(seq, [1.0, 0.0, 2.0, 1.0])], "cross_entropy").result()
    assert out.metrics["num_tokens"] == 4
    assert out.metrics["loss:mean"] == pytest.approx(out.metrics["loss:sum"] / 4.0)


def test_out_of_vocab_tokens_are_rejected() -> None:
    c = NoopTrainingClient(vocab_size=300)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        c.forward([ce_datum([1, 2, 999])], "cross_entropy").result()


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        NoopTrainingClient().load_state("noop://nothing").result()
    with pytest.raises(CheckpointError):
        NoopTrainingClient(state_dir=str(tmp_path)).load_state(str(tmp_path / "nope")).result()
    with pytest.raises(CheckpointError, match="vocab_size"):
        path = NoopTrainingClient(vocab_size=300, state_dir=str(tmp_path)).save_state("v")
        NoopTrainingClient(vocab_size=512).load_state(path.result().path).result()


def test_sampler_loads_saved_weights_from_disk(tmp_path: Path) -> None:
    c = NoopTrainingClient(seed=2, state_dir=str(tmp_path))
    data = [ce_datum(s) for s in make_sequences(512, 2, 6)]
    c.forward_backward(data, "cross_entropy").result()
    from kitchen.ports import AdamParams

    c.optim_step(AdamParams(learning_rate=0.05)).result()
    path = c.save_weights_for_sampler("w").result().path
    in_mem = c.save_weights_and_get_sampling_client("w2")
    from_disk = NoopSamplingClient(weights=path)
    prompt = ModelInput.from_ints(make_sequences(512, 1, 8, seed=4)[0])
    assert from_disk.compute_logprobs(prompt).result() == in_mem.compute_logprobs(prompt).result()
    assert c.load_weights_for_sampler(path).rows == from_disk.weights.rows


def test_stop_tokens_and_strings() -> None:
    s = NoopSamplingClient(seed=0)
    prompt = ModelInput.from_ints([10, 11])
    free = s.sample(prompt, 1, SamplingParams(max_tokens=8, seed=1)).result().sequences[0]
    assert free.stop_reason == "length" and len(free.tokens) == 8
    stop_at = free.tokens[2]
    stopped = s.sample(prompt, 1, SamplingParams(max_tokens=8, seed=1, stop=[stop_at]))
    seq = stopped.result().sequences[0]
    assert seq.stop_reason == "stop"
    assert seq.tokens == free.tokens[: free.tokens.index(stop_at) + 1]
    # String stops use the byte-level convention (id = 4 + byte).
    checked = 0
    for seed in range(1, 30):
        seq = s.sample(prompt, 1, SamplingParams(max_tokens=12, seed=seed)).result().sequences[0]
        printable = [t for t in seq.tokens if 4 + 33 <= t < 4 + 127]
        if not printable:
            continue
        text = chr(printable[0] - 4)
        out = s.sample(prompt, 1, SamplingParams(max_tokens=12, seed=seed, stop=text)).result()
        got = out.sequences[0]
        assert got.stop_reason == "stop" and got.tokens[-1] == printable[0]
        assert got.tokens == seq.tokens[: seq.tokens.index(printable[0]) + 1]
        checked += 1
    assert checked >= 3


def test_top_k_one_is_greedy() -> None:
    s = NoopTrainingClient(seed=3).save_weights_and_get_sampling_client("s")
    prompt = ModelInput.from_ints([5])
    greedy = s.sample(prompt, 1, SamplingParams(max_tokens=6, temperature=0.0)).result()
    top1 = s.sample(prompt, 2, SamplingParams(max_tokens=6, top_k=1, seed=8)).result()
    assert all(q.tokens == greedy.sequences[0].tokens for q in top1.sequences)
    # Logprobs are the model's own (as Tinker's), not the truncated top-1 distribution's 0.
    assert top1.sequences[0].logprobs == greedy.sequences[0].logprobs
    assert all(x < -1.0 for x in top1.sequences[0].logprobs or ())


def test_different_seeds_give_different_samples() -> None:
    s = NoopSamplingClient()
    prompt = ModelInput.from_ints([5, 6])
    a = s.sample(prompt, 2, SamplingParams(max_tokens=10, seed=1)).result()
    b = s.sample(prompt, 2, SamplingParams(max_tokens=10, seed=2)).result()
    assert a.sequences != b.sequences
    assert a.sequences[0] != a.sequences[1]


def test_sft_tiny_builtin_and_registration() -> None:
    store = NoopDatasetStore()
    ds = store.load(SFT_TINY)
    assert len(ds) == 64 and store.exists(SFT_TINY)
    row = ds[0]
    user, asst = row["messages"]
    a, b = user["content"].removeprefix("What is ").removesuffix("?").split("+")
    assert asst["content"] == str(int(a) + int(b))
    assert [dict(r) for r in store.load(SFT_TINY)] == [dict(r) for r in ds]
    store.register("mine", [{"text": "a"}])
    store.register("mine:test", [{"text": "b"}])
    assert [dict(r) for r in store.load("mine", split="test")] == [{"text": "b"}]
    assert [dict(r) for r in store.load("mine", split="train")] == [{"text": "a"}]
    with pytest.raises(DataError, match="register it first"):
        store.load("unknown")


def test_sft_tiny_renders_with_the_noop_tokenizer() -> None:
    tok = NoopTokenizer()
    row = NoopDatasetStore().load(SFT_TINY)[0]
    r = tok.render_chat(row["messages"])
    trained = [t for t, w in zip(r.tokens, r.weights, strict=True) if w]
    assert tok.decode(trained) == row["messages"][1]["content"]
    assert trained[-1] == tok.eos_token_id


def test_tokenizer_needs_room_for_bytes() -> None:
    with pytest.raises(ValueError, match="260"):
        NoopTokenizer(vocab_size=100)
    tok = NoopTokenizer()
    assert tok.encode("hi", add_special_tokens=True)[0] == tok.bos_token_id
    assert tok.decode([1, 4 + ord("a"), 2], skip_special_tokens=False) == "<bos>a<eos>"
    assert tok.decode(tok.encode("héllo ✓")) == "héllo ✓"


def test_load_weights_takes_sampler_weights_and_resets_the_optimizer(tmp_path: Path) -> None:
    from kitchen.ports import AdamParams

    a = NoopTrainingClient(seed=1, state_dir=str(tmp_path))
    data = [ce_datum(s) for s in make_sequences(512, 2, 6)]
    a.forward_backward(data, "cross_entropy").result()
    a.optim_step(AdamParams(learning_rate=0.05)).result()
    path = a.save_weights_for_sampler("w").result().path
    b = NoopTrainingClient(seed=7)
    b.load_weights(path).result()
    assert b.state_dict()["params"] == a.state_dict()["params"]
    assert b.state_dict()["adam_step"] == 0
    state = a.save_state("full").result().path
    c = NoopTrainingClient(seed=7)
    c.load_weights(state).result()
    assert c.state_dict()["params"] == a.state_dict()["params"]


def test_noop_dataset_store_reads_local_jsonl_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest as _pytest

    from kitchen.adapters.noop import NoopDatasetStore
    from kitchen.errors import DataError

    good = tmp_path / "rows.jsonl"
    good.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert [r["text"] for r in NoopDatasetStore().load(str(good))] == ["a", "b"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{oops\n')
    with _pytest.raises(DataError, match=r"bad\.jsonl row 1: not valid JSON"):
        NoopDatasetStore().load(str(bad))

"""Cookbook example 1 end to end on its shipped corpus: twice, the second all cache hits."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kitchen.io import read_jsonl

pytest.importorskip("datasketch")
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is a directory of the repo, not an installed package
    sys.path.insert(0, str(ROOT))
pipeline = importlib.import_module("examples.domain_qlora.pipeline")


def test_example_runs_end_to_end_and_reruns_from_cache(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with pipeline.serve_docs(pipeline.CORPUS / "docs" / "http") as url:
        t0 = time.perf_counter()
        first = pipeline.run_data(work, url)
        t1 = time.perf_counter()
        second = pipeline.run_data(work, url)
        t2 = time.perf_counter()
    print(f"\nfirst run {t1 - t0:.2f}s, second run {t2 - t1:.2f}s (all cache hits)")
    print(pipeline.summary(work, second))
    assert [c["hit"] for c in first["cache"]] == [False] * 9
    assert [c["hit"] for c in second["cache"]] == [True] * 9
    assert first["state"]["dataset"] == second["state"]["dataset"] == str(work / "dataset" / "v1")

    # dedup: planted exact copy (compat/response.py) and near copies (legacy_request, faq-0.1)
    dedup = json.loads((work / "data" / "dedup" / "dedup.json").read_text())
    assert dedup["stats"] == {"before": 12, "after": 9, "exact_dropped": 1, "near_dropped": 2}
    dropped = {d["id"]: (d["duplicate_of"], d["kind"]) for d in dedup["dropped"]}
    assert dropped == {
        "tinyroute-code/tinyroute/compat/response.py": (
            "tinyroute-code/tinyroute/response.py",
            "exact",
        ),
        "tinyroute-code/tinyroute/compat/legacy_request.py": (
            "tinyroute-code/tinyroute/request.py",
            "near",
        ),
        "faq/faq-0.1.md": ("faq/faq.md", "near"),
    }
    # nothing else was lost: every normalised document is kept or mapped to a kept one
    normalised = {d["id"] for d in read_jsonl(work / "data" / "normalised" / "documents.jsonl")}
    kept = {d["id"] for d in read_jsonl(work / "data" / "dedup" / "documents.jsonl")}
    assert kept | set(dropped) == normalised and not kept & set(dropped)
    assert all(dup in kept for dup, _ in dropped.values())

    # bad sources: the unreachable one and the binary file are rejected with reasons
    fetch_rej = read_jsonl(work / "data" / "fetch" / "rejected.jsonl")
    assert [r["source"] for r in fetch_rej] == ["changelog"]
    assert "cannot reach" in fetch_rej[0]["reason"]
    norm_rej = read_jsonl(work / "data" / "normalised" / "rejected.jsonl")
    assert [r["id"] for r in norm_rej] == ["faq/logo.png"]

    # licence headers stripped, CRLF gone
    docs = {d["id"]: d["text"] for d in read_jsonl(work / "data" / "dedup" / "documents.jsonl")}
    assert all("Copyright" not in t and "\r" not in t for t in docs.values())

    # gate: the docs snippet with a syntax error is rejected by py_compile
    report = json.loads((work / "data" / "gate" / "report.json").read_text())
    rejected = read_jsonl(work / "data" / "gate" / "rejected.jsonl")
    assert report["rejected"] == len(rejected) >= 1
    assert any("SyntaxError" in r["reasons"][0]["reason"] for r in rejected)
    assert report["checks"]["py_compile"]["checked"] > 0

    # package: versioned dataset with provenance on every row
    ds = work / "dataset" / "v1"
    manifest = json.loads((ds / "manifest.json").read_text())
    rows = [r for s in ("train", "valid", "test") for r in read_jsonl(ds / f"{s}.jsonl")]
    assert len(rows) == manifest["stats"]["rows"] == report["passed"]
    assert {s["name"] for s in manifest["sources"]} == {
        "tinyroute-code",
        "guide",
        "middleware-docs",
        "faq",
    }
    for r in rows:
        p = r["provenance"]
        assert p["source_file"] and p["transformation"] and p["generator"]["kind"]
    teacher = [r for r in rows if r["provenance"]["generator"]["kind"] == "teacher"]
    assert teacher and all(
        r["provenance"]["generator"]["model"] == "extractive-teacher-v1" for r in teacher
    )
    index = json.loads((work / "dataset" / "index.json").read_text())
    assert [v["version"] for v in index["versions"]] == [1]


def test_one_command_trains_evaluates_and_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The model half: QLoRA SFT on dataset/v1/train.jsonl, the held-out prompt suite scored
    on base vs adapter, and the adapter + merged exports, all from the example's command."""
    pytest.importorskip("peft")
    pytest.importorskip("bitsandbytes")
    transformers = pytest.importorskip("transformers")
    safetensors = pytest.importorskip("safetensors")
    import torch

    work = tmp_path / "w"
    t0 = time.perf_counter()
    assert pipeline.main(["--work-dir", str(work), "--shards", "1"]) == 0
    t1 = time.perf_counter()
    out = capsys.readouterr().out
    assert "dataset:" in out and "version 1" in out
    assert "qlora sft: trained 40 steps" in out and "prompt suite" in out

    report = json.loads((work / "eval" / "report.json").read_text())
    base, adapter, merged = report["base"], report["adapter"], report["merged"]
    with capsys.disabled():
        print(f"\none command: {t1 - t0:.1f}s (SFT {report['sft']['seconds']}s)")
        print(
            f"suite loss/token: base {base['loss']:.3f} adapter {adapter['loss']:.3f} "
            f"merged {merged['loss']:.3f}"
        )
    # the suite is the held-out test split, scored on its reference answers
    test_rows = read_jsonl(work / "dataset" / "v1" / "test.jsonl")
    assert len(base["prompts"]) == len(adapter["prompts"]) == len(test_rows) > 0
    assert base["answer_tokens"] == adapter["answer_tokens"] > 0
    # the adapter fits the domain better than the base model, on every prompt
    assert adapter["loss"] < base["loss"] - 0.3
    assert all(
        a["loss"] < b["loss"] for a, b in zip(adapter["prompts"], base["prompts"], strict=True)
    )
    assert report["delta_adapter_vs_base"] == pytest.approx(adapter["loss"] - base["loss"])
    assert report["sft"]["train_loss_last"] < report["sft"]["train_loss_first"]
    # greedy generations for both models, on every prompt of the suite
    assert len(base["generations"]) == len(adapter["generations"]) == len(test_rows)
    assert all(isinstance(g["greedy"], str) for g in base["generations"] + adapter["generations"])

    # eval/: metrics.json and one sample file per prompt, base vs adapter, gate checks run
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["loss"]["adapter"] == adapter["loss"] and metrics["loss"]["base"] == base["loss"]
    assert metrics["prompts_adapter_better"] == len(test_rows)
    n_code = sum(r["lang"] == "python" for r in test_rows)
    for label in ("base", "adapter", "reference"):
        by = metrics["checks"][label]["by_check"]
        assert by["non_empty"]["checked"] == by["length"]["checked"] == len(test_rows)
        assert by.get("py_compile", {"checked": 0})["checked"] == n_code
    # the references passed the gate, so they pass the same checks here
    assert metrics["checks"]["reference"]["all_checks_passed"] == len(test_rows)
    samples = sorted((work / "eval" / "sample_outputs").glob("*.json"))
    assert len(samples) == len(test_rows)
    one = json.loads(samples[0].read_text())
    assert {"prompt", "reference", "base", "adapter"} <= set(one)
    assert one["base"]["text"] == base["generations"][0]["greedy"]
    assert set(one["adapter"]["checks"]) >= {"non_empty", "length", "printable"}

    # GGUF files (F16, Q8_0), each read back and compared tensor by tensor on export
    gguf = report["export"]["gguf"]
    assert set(gguf) == {"f16", "q8_0"}
    assert gguf["f16"]["rel_max_err"] < 1e-3 and gguf["q8_0"]["rel_max_err"] < 1 / 200
    assert Path(gguf["q8_0"]["path"]).stat().st_size < Path(gguf["f16"]["path"]).stat().st_size

    # the run: a completed kitchen run in QLoRA mode, suite losses in its metrics
    run_dir = Path(report["run_dir"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["adapters"] == "hf"
    assert json.loads((run_dir / "config.json").read_text())["model"]["mode"] == "qlora"
    logged = {k for m in read_jsonl(run_dir / "metrics.jsonl") for k in m}
    assert {"suite_loss/base", "suite_loss/adapter", "loss", "val_loss"} <= logged

    # adapter export: LoRA weights only, as safetensors, with a peft config
    adapter_dir = work / "export" / "adapter"
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 16
    with safetensors.safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    lora = [k for k in keys if "lora_A" in k or "lora_B" in k]
    assert any("lm_head" in k for k in lora) and any("q_proj" in k for k in lora)
    # peft also stores the (small) output head it adapted; no other base weight is in it
    assert set(keys) - set(lora) <= {"base_model.model.lm_head.base_layer.weight"}

    # merged export: plain transformers loads it (no peft, no kitchen), no LoRA left in it,
    # and it scores like the adapter (the delta folded into the unquantised base)
    merged_dir = work / "export" / "merged"
    model = transformers.AutoModelForCausalLM.from_pretrained(str(merged_dir))
    tok = transformers.AutoTokenizer.from_pretrained(str(merged_dir))
    assert not any("lora" in k for k in model.state_dict())
    ids = tok("def dispatch(self, request):", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape[:2] == ids.shape and torch.isfinite(logits).all()
    assert merged["loss"] == pytest.approx(adapter["loss"], abs=0.05)

    # the same command again: data all cache hits, the completed run is reused
    assert pipeline.main(["--work-dir", str(work), "--shards", "1"]) == 0
    again = capsys.readouterr().out
    assert "qlora sft: reused" in again
    assert json.loads((work / "eval" / "report.json").read_text())["adapter"] == adapter


def test_cli_data_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pipeline.main(["--work-dir", str(tmp_path / "w"), "--shards", "1", "--data-only"]) == 0
    out = capsys.readouterr().out
    assert "dataset:" in out and "version 1" in out and "qlora" not in out
    assert not (tmp_path / "w" / "model").exists()


# -- pipeline.yaml and per-stage runs ------------------------------------------------------

config = importlib.import_module("examples.domain_qlora.config")
SHIPPED = (ROOT / "examples" / "domain_qlora" / "pipeline.yaml").read_text()


def _bad(tmp_path: Path, edit: Any) -> str:
    import yaml

    from kitchen.errors import UsageError

    data = yaml.safe_load(SHIPPED)
    edit(data)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UsageError) as info:
        config.load_config(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda d: d["model"]["sft"].update(batch_size=0), "model.sft.batch_size", "greater"),
        (lambda d: d["model"]["sft"].update(learning_rte=1e-3), "model.sft.learning_rte", "extra"),
        (lambda d: d["dataset"].update(train=0.9), "dataset", "must be 1.0"),
        (lambda d: d["filters"].update(shards="two"), "filters.shards", "integer"),
        (lambda d: d["sources"][0].update(kind="svn"), "sources.0", "tag"),
        (lambda d: d["sources"][1].pop("file"), "sources.1.file", "required"),
        (lambda d: d["export"].update(gguf=["q4_k"]), "export.gguf.0", "f16"),
        (lambda d: d["export"].update(merged=False), "export", "gguf needs merged"),
        (lambda d: d["model"].update(path="/m"), "model", "exactly one of path"),
        (lambda d: d.update(seed=-1), "seed", "greater than or equal"),
        (lambda d: d.pop("sources"), "sources", "required"),
    ],
)
def test_pipeline_yaml_errors_name_the_key(tmp_path: Path, edit: Any, key: str, words: str) -> None:
    msg = _bad(tmp_path, edit)
    assert msg.startswith(f"pipeline.yaml: {key}: "), msg
    assert words.lower() in msg.lower() and "\n" not in msg


def test_pipeline_yaml_is_the_single_config() -> None:
    cfg = config.load_config()
    assert [s.name for s in cfg.sources] == [
        "tinyroute-code", "guide", "middleware-docs", "faq", "changelog"
    ]  # fmt: skip
    assert cfg.model_spec()["mode"] == "qlora" and cfg.model_spec()["seed"] == cfg.seed
    assert cfg.export.gguf == ["f16", "q8_0"]
    # the settings reach the stages: a changed filter changes the gate's checks
    lengths = [c for c in pipeline.checks(cfg) if c.name == "length"]
    assert lengths[0].min_chars == cfg.filters.min_chars


def test_not_yaml_and_missing_file_are_one_line(tmp_path: Path) -> None:
    from kitchen.errors import UsageError

    bad = tmp_path / "p.yaml"
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(UsageError, match="is not valid YAML"):
        config.load_config(bad)
    with pytest.raises(UsageError, match="cannot read the pipeline config"):
        config.load_config(tmp_path / "missing.yaml")


def test_per_stage_runs_need_their_inputs_and_share_the_chain_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "w"
    run = ["--work-dir", str(work), "--shards", "1", "run"]
    # a stage whose input stage has not run: exit 2, one line naming the stage to run first
    assert pipeline.main([*run, "dedup"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs 'normalised' from stage 'normalise'" in err
    assert "run normalise` first" in err
    assert pipeline.main([*run, "train"]) == 2
    assert "from stage 'package'" in capsys.readouterr().err
    # the data stages one at a time, in order
    for name in pipeline.DATA_STAGES:
        assert pipeline.main([*run, name]) == 0, capsys.readouterr().err
        assert f"stage {name}: done" in capsys.readouterr().out
    state = json.loads((work / "state.json").read_text())
    assert set(state["stages"]) == set(pipeline.DATA_STAGES)
    dataset = state["values"]["dataset"]
    rows = sum(len(read_jsonl(Path(dataset) / f"{s}.jsonl")) for s in ("train", "valid", "test"))
    # a stage re-run alone reuses its cached result; the whole chain then hits every entry
    # the single-stage runs stored (same node paths, same cache keys)
    with pipeline.serve_docs(pipeline.CORPUS / "docs" / "http") as url:
        chained = pipeline.run_data(work, url, shards=1)
    assert chained["state"]["dataset"] == dataset
    assert chained["cache"] and all(c["hit"] for c in chained["cache"])
    manifest = json.loads((Path(dataset) / "manifest.json").read_text())
    assert manifest["stats"]["rows"] == rows
    # a deleted input is noticed: the stage that makes it must run again
    (work / "data" / "gate" / "gate.json").unlink()
    assert pipeline.main([*run, "package"]) == 2
    assert "needs 'gated' from stage 'gate'" in capsys.readouterr().err

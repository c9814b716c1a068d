"""Cookbook example 2 (edit_sft_srl) end to end on the noop adapters, plus its data checks."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from kitchen.errors import DataError
from kitchen.io import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is a directory of the repo, not an installed package
    sys.path.insert(0, str(ROOT))
R = importlib.import_module("examples.edit_sft_srl.records")
pipeline = importlib.import_module("examples.edit_sft_srl.pipeline")

GOOD = {
    "id": "x",
    "instruction": "Rename a to b.",
    "pre": "a = 1\n",
    "post": "b = 1\n",
    "actions": [{"search": "a = 1", "replace": "b = 1"}],
}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"instruction": ""}, "instruction", "non-empty"),
        ({"post": "a = 1\n"}, "post", "identical"),
        ({"actions": []}, "actions", "non-empty list"),
        ({"actions": [{"search": "zzz", "replace": "b"}]}, "actions[0]", "occurs 0 times"),
        ({"actions": [{"search": "a", "replace": "c"}]}, "actions", "do not produce post"),
        ({"actions": [{"search": "a = 1"}]}, "actions[0]", "keys must be exactly"),
    ],
)
def test_schema_errors_name_row_and_field(change: dict, field: str, message: str) -> None:
    with pytest.raises(DataError) as info:
        R.parse_record({**GOOD, **change}, "edits.jsonl", 7)
    assert f"field '{field}'" in str(info.value) or field in str(info.value)
    assert "7" in str(info.value) and message in str(info.value)


def test_shipped_records_validate_split_and_stats() -> None:
    edits = R.load_edits(pipeline.DATA)
    assert len(edits) >= 20 and any(len(e.actions) > 1 for e in edits)
    splits = R.split(edits, seed=0)
    assert R.split(edits, seed=0) == splits  # deterministic
    ids = [e.id for part in splits.values() for e in part]
    assert sorted(ids) == sorted(e.id for e in edits)  # a partition
    stats = R.split_stats(splits)
    assert sum(s["records"] for s in stats.values()) == len(edits)
    assert all(s["mean_changed_lines"] > 0 for s in stats.values())


def test_scores_and_offline_action_application() -> None:
    e = R.parse_record(GOOD, "t", 0)
    assert R.score_code("b = 1\n", e.post) == {"exact_match": 1.0, "similarity": 1.0}
    assert R.score_code("a = 1\n", e.post)["exact_match"] == 0.0
    good = json.dumps({"search": "a = 1", "replace": "b = 1"})
    assert R.score_action(good, e, 0) == {
        "valid": 1.0,
        "applies": 1.0,
        "exact_match": 1.0,
        "similarity": 1.0,
    }
    absent = json.dumps({"search": "q", "replace": "b"})
    assert R.score_action(absent, e, 0)["applies"] == 0.0
    assert R.score_action("not json", e, 0)["valid"] == 0.0
    # the RL reward is kitchen's action similarity: 1 for the reference, -0.2 if invalid
    info = {"reference": good}
    assert pipeline.edit_action_reward(good, info) == pytest.approx(1.0)
    assert pipeline.edit_action_reward("{}", info) == pytest.approx(-0.2)
    assert -0.2 < pipeline.edit_action_reward(absent, info) < 1.0


def test_pipeline_end_to_end_on_noop(tmp_path: Path) -> None:
    work = tmp_path / "edit"
    assert pipeline.main(["--work-dir", str(work), "--sft-epochs", "2", "--rl-steps", "4"]) == 0
    summary = json.loads((work / "summary.json").read_text())
    for stage in ("sft0", "sft1"):
        run = Path(summary[stage]["run_dir"])
        assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
        preds = read_jsonl(run / "artifacts" / "predictions.jsonl")
        assert preds and all(0.0 <= p["similarity"] <= 1.0 for p in preds)
    assert set(summary["sft0"]["eval"]) == {"exact_match", "similarity", "similarity_unedited"}
    assert set(summary["sft1"]["eval"]) == {"valid", "applies", "exact_match", "similarity"}
    # the teacher batch: every step asked once, faulty answers filtered out by verification
    t = summary["teacher"]
    assert t["requests"] == t["steps_total"] and 0 < t["steps_verified"] < t["steps_total"]
    rows = read_jsonl(work / "teacher" / "verified.jsonl")
    assert sum(len(r["steps"]) for r in rows) == t["steps_verified"]
    assert all(s["verified"] for r in rows for s in r["steps"])
    # offline RL ran on the verified steps, logged rewards, and kitchen report drew them
    metrics = read_jsonl(Path(summary["rl"]["run_dir"]) / "metrics.jsonl")
    assert any(m.get("offline/steps_kept") == t["steps_verified"] for m in metrics)
    rewards = [m["reward"] for m in metrics if "reward" in m]
    assert len(rewards) == 4 and all(-0.2 - 1e-9 <= r <= 1.0 for r in rewards)
    for png in summary["reports"].values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

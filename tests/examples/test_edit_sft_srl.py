"""Cookbook example 2 (edit_sft_srl): ast-grep actions (validation, offline application,
reward), the task generator, the data checks, and the pipeline end to end (noop; a tiny
hf run checks the metrics are computed on a real model)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitchen.errors import DataError
from kitchen.io import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is a directory of the repo, not an installed package
    sys.path.insert(0, str(ROOT))
R = importlib.import_module("examples.edit_sft_srl.records")
pytest.importorskip("ast_grep_py")
pipeline = importlib.import_module("examples.edit_sft_srl.pipeline")
A = importlib.import_module("examples.edit_sft_srl.actions")
G = importlib.import_module("examples.edit_sft_srl.generate")

RULE = {"id": "rename", "language": "python", "rule": {"pattern": "a"}, "fix": "b"}
GOOD = {
    "id": "x",
    "instruction": "Rename a to b.",
    "pre": "a = 1\nprint(a)\n",
    "post": "b = 1\nprint(b)\n",
    "actions": [RULE],
}
CALLS = "def f(x, y):\n    z = load(x, mode=1)\n    return load(y), pair(x, y)\n"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"instruction": ""}, "instruction", "non-empty"),
        ({"post": GOOD["pre"]}, "post", "identical"),
        ({"actions": []}, "actions", "non-empty list"),
        ({"actions": [{**RULE, "rule": {"pattern": "zzz"}}]}, "actions[0]", "matches nothing"),
        ({"actions": [{**RULE, "fix": "c"}]}, "actions", "do not produce post"),
        ({"actions": [{**RULE, "language": "klingon"}]}, "actions[0]", "unknown language"),
        ({"actions": ["id: x\nrule: [unclosed"]}, "actions[0]", "invalid YAML"),
        ({"actions": [{"id": "x", "language": "python", "fix": "b"}]}, "actions[0]", "'rule'"),
    ],
)
def test_schema_errors_name_row_and_field(change: dict, field: str, message: str) -> None:
    with pytest.raises(DataError) as info:
        R.parse_record({**GOOD, **change}, "edits.jsonl", 7)
    assert f"field '{field}'" in str(info.value) or field in str(info.value)
    assert "7" in str(info.value) and message in str(info.value)


def test_shipped_records_validate_split_and_stats() -> None:
    edits = R.load_edits(pipeline.DATA, G.generate(200, seed=0))
    assert len(edits) >= 200 and any(len(e.actions) > 1 for e in edits)
    splits = R.split(edits, seed=0)
    assert R.split(edits, seed=0) == splits  # deterministic
    ids = [e.id for part in splits.values() for e in part]
    assert sorted(ids) == sorted(e.id for e in edits)  # a partition
    stats = R.split_stats(splits)
    assert sum(s["records"] for s in stats.values()) == len(edits)
    assert all(s["mean_changed_lines"] > 0 for s in stats.values())


def test_rule_yaml_cli_and_dict_are_one_normalised_action() -> None:
    a = A.parse_action(RULE)
    assert A.parse_action(a.rule_yaml()) == a
    assert A.parse_action("sg run -p 'a' -r 'b' -l python").fields() == {**a.fields(), "id": "cli"}
    assert a.rule_yaml() == "id: rename\nlanguage: python\nrule:\n  pattern: a\nfix: b\n"
    assert A.parse_action(A.parse_action(a.cli()).rule_yaml()).pattern == "a"


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("id: x\nrule: {pattern: [", "invalid YAML"),
        ({**RULE, "language": "cobol"}, "unknown language 'cobol'"),
        ({**RULE, "rule": {"pattern": ""}}, "rule.pattern is empty"),
        ({**RULE, "rule": {"kind": "call"}}, "string 'pattern'"),
        ({**RULE, "extra": 1}, "unknown fields ['extra']"),
        ("just some words", "not a rule"),
        ("sg run -p 'a' --json", "unsupported sg run argument '--json'"),
        ({**RULE, "rule": {"pattern": "nowhere($$$A)"}}, "matches nothing"),
        ({**RULE, "rule": {"pattern": "load($A)"}, "fix": "load($A"}, "does not parse"),
        ({**RULE, "rule": {"pattern": "load($A)"}, "fix": "load($B)"}, "does not bind"),
    ],
)
def test_invalid_or_inapplicable_actions_say_why(action: object, reason: str) -> None:
    why = A.check_action(action, CALLS)
    assert why is not None and reason in why


def test_ast_grep_applies_on_the_syntax_tree_with_metavariables() -> None:
    call = {**RULE, "rule": {"pattern": "load($$$ARGS)"}, "fix": "read($$$ARGS)"}
    assert A.apply_action(CALLS, call) == CALLS.replace("load(", "read(")
    swap = {**RULE, "rule": {"pattern": "pair($A, $B)"}, "fix": "pair($B, $A)"}
    assert "pair(y, x)" in A.apply_action(CALLS, swap)
    # an identifier pattern renames identifiers only, not text inside strings
    code = "x = 1\nprint('x is', x)\n"
    assert A.apply_action(code, {**RULE, "rule": {"pattern": "x"}, "fix": "n"}) == (
        "n = 1\nprint('x is', n)\n"
    )


def test_scores_and_offline_action_application() -> None:
    e = R.parse_record(GOOD, "t", 0)
    assert R.score_code(GOOD["post"], e.post) == {"exact_match": 1.0, "similarity": 1.0}
    assert R.score_code(GOOD["pre"], e.post)["exact_match"] == 0.0
    good = A.parse_action(RULE).rule_yaml()
    assert R.score_action(good, e, 0) == {
        "valid": 1.0,
        "applies": 1.0,
        "exact_match": 1.0,
        "similarity": 1.0,
        "action_exact": 1.0,
        "reason": None,
    }
    absent = A.parse_action({**RULE, "rule": {"pattern": "q"}}).rule_yaml()
    scored = R.score_action(absent, e, 0)
    assert scored["valid"] == 1.0 and scored["applies"] == 0.0
    assert "matches nothing" in scored["reason"]
    assert R.score_action("not: [yaml", e, 0)["valid"] == 0.0


def test_reward_is_field_and_string_similarity_with_logged_invalid_reasons() -> None:
    ref = A.parse_action(RULE).rule_yaml()
    obs = R.action_observation(R.parse_record(GOOD, "t", 0), 0)
    info = {"reference": ref, "observation": obs}
    pipeline.INVALID_REASONS.clear()
    assert pipeline.edit_action_reward(ref, info) == pytest.approx(1.0)
    # CLI form of the same rule: 3 of 4 fields (the id differs), similar YAML
    cli = pipeline.edit_action_reward("sg run -p a -r b -l python", info)
    assert 0.7 * 0.75 < cli < 1.0
    wrong_fix = A.parse_action({**RULE, "fix": "c"}).rule_yaml()
    assert pipeline.edit_action_reward(wrong_fix, info) == pytest.approx(
        0.7 * 0.75 + 0.3 * A.string_score(A.parse_action(wrong_fix), A.parse_action(ref))
    )
    for bad in ("id: [", ref.replace("python", "klingon"), ref.replace("pattern: a", "pattern: q")):
        assert pipeline.edit_action_reward(bad, info) == pytest.approx(-0.2)
    assert set(pipeline.INVALID_REASONS) == {"invalid YAML", "unknown language 'klingon'",
                                             "rule matches nothing in the code"}  # fmt: skip


def test_generator_is_seeded_verified_and_covers_every_kind() -> None:
    rows = G.generate(120, seed=3)
    assert rows == G.generate(120, seed=3) and rows != G.generate(120, seed=4)
    assert len({r["id"] for r in rows}) == 120
    kinds = {r["source"].split(":")[1] for r in rows}
    assert set(G.KINDS) <= kinds
    assert any(len(r["actions"]) == 2 for r in rows)
    edits = R.load_edits(pipeline.DATA, rows)  # every generated record validates
    for e in edits:
        states = e.states()
        assert states[0] == e.pre and states[-1] == e.post and e.pre != e.post


@settings(max_examples=8, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_generated_tasks_validate_for_any_seed(seed: int) -> None:
    rows = G.generate(30, seed=seed)
    for i, row in enumerate(rows):
        e = R.parse_record(row, "gen", i)
        assert R.canonical_action(e.actions[0]) == A.parse_action(row["actions"][0]).rule_yaml()


def test_pipeline_end_to_end_on_noop(tmp_path: Path) -> None:
    work = tmp_path / "edit"
    argv = ["--work-dir", str(work), "--generated", "60", "--sft1-epochs", "2", "--rl-steps", "4"]
    assert pipeline.main(argv) == 0
    summary = json.loads((work / "summary.json").read_text())
    for stage in ("sft0", "sft1"):
        run = Path(summary[stage]["run_dir"])
        assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
        preds = read_jsonl(run / "artifacts" / "predictions.jsonl")
        assert preds and all(0.0 <= p["similarity"] <= 1.0 for p in preds)
    assert set(summary["sft0"]["eval"]) == {"exact_match", "similarity", "similarity_unedited"}
    metrics = {"valid", "applies", "exact_match", "similarity", "action_exact", "failures"}
    assert set(summary["sft1"]["eval"]) == set(summary["sft1"]["eval_untrained"]) == metrics
    assert set(summary["rl"]["eval"]) == metrics
    n_test_steps = sum(len(R.stage1_rows(e)) for e in _test_edits(work))
    preds = read_jsonl(Path(summary["sft1"]["run_dir"]) / "artifacts" / "predictions.jsonl")
    assert len(preds) == n_test_steps
    # every failed prediction says why (noop generations are bytes: invalid YAML or not a rule)
    assert all(p["reason"] for p in preds if not p["applies"])
    assert sum(summary["sft1"]["eval"]["failures"].values()) == sum(1 for p in preds if p["reason"])
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
    invalid = json.loads((work / "rl_invalid_actions.json").read_text())
    assert invalid == summary["rl"]["invalid_actions"] and sum(invalid.values()) > 0
    for png in summary["reports"].values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the stage report: data, SFT configs and metrics, RL reward curve, best checkpoint
    report = (work / "reports" / "training" / "stage2.md").read_text()
    for heading in ("## Data", "## SFT", "## Teacher trajectories", "## Offline SRL"):
        assert heading in report
    assert "| train reward |" in report and "Best checkpoint: ckpt-" in report


def _test_edits(work: Path) -> list:
    manifest = json.loads((work / "data" / "manifest.json").read_text())
    gen = read_jsonl(work / "data" / "generated.jsonl")
    by_id = {e.id: e for e in R.load_edits(pipeline.DATA, gen)}
    return [by_id[i] for i in manifest["splits"]["test"]]


@pytest.mark.hf
def test_tiny_hf_run_computes_the_metrics(tmp_path: Path) -> None:
    """The mechanics on a real model (tiny settings: the README's figures come from the
    full run): baseline and trained stage-1 metrics, teacher, RL and its test eval."""
    pytest.importorskip("transformers")
    work = tmp_path / "hf"
    argv = ["--work-dir", str(work), "--adapters", "hf", "--generated", "40", "--sft0-epochs",
            "1", "--sft1-epochs", "1", "--rl-steps", "1", "--eval-limit", "3"]  # fmt: skip
    assert pipeline.main(argv) == 0
    summary = json.loads((work / "summary.json").read_text())
    for key in ("eval_untrained", "eval"):
        ev = summary["sft1"][key]
        assert all(0.0 <= ev[k] <= 1.0 for k in ("valid", "applies", "exact_match"))
    assert summary["rl"]["step"] == 1 and 0.0 <= summary["rl"]["eval"]["valid"] <= 1.0
    manifest = json.loads((work / "data" / "manifest.json").read_text())
    assert manifest["sources"]["generated"]["n"] == 40

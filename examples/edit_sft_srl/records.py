"""Edit records: schema, validation, deterministic splits, per-split stats, and the rows
each training stage reads.

A normalised edit record (one JSON object per line)::

    {"id": "rename-var-1", "instruction": "Rename the variable `tmp` to `total`.",
     "lang": "python", "pre": "<code before>", "post": "<code after>",
     "actions": [{"id": "rename-variable", "language": "python",
                  "rule": {"pattern": "tmp"}, "fix": "total"}, ...],
     "source": "handwritten" | "generated:<kind>"}

``actions`` are ast-grep rewrite rules (see :mod:`examples.edit_sft_srl.actions`; a rule
YAML string or an ``sg run -p ... -r ...`` command is accepted too and normalised). Applied
in order to ``pre`` with ast-grep-py, each must match and the result must equal ``post``.
That is checked when loading, so a record whose actions do not reproduce its edit never
reaches training.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.edit_sft_srl.actions import ActionError, AstGrepAction, parse_action
from examples.edit_sft_srl.actions import apply_action as _apply

from kitchen.errors import DataError

__all__ = ["ActionError", "DataError"]

REQUIRED = ("id", "instruction", "pre", "post", "actions")
SYSTEM = "You edit Python code. Reply with the complete edited code and nothing else."
ACTION_SYSTEM_HINT = "Reply with one ast-grep rule as YAML: id, language, rule.pattern, fix."


@dataclass(frozen=True)
class Edit:
    id: str
    instruction: str
    pre: str
    post: str
    actions: tuple[AstGrepAction, ...]
    lang: str = "python"
    source: str = "handwritten"

    def states(self) -> list[str]:
        """The code before each action, then the final code (len = actions + 1)."""
        out = [self.pre]
        for a in self.actions:
            out.append(apply_action(out[-1], a))
        return out


# -- actions ------------------------------------------------------------------------------


def validate_action(action: Any) -> AstGrepAction:
    """The normalised ast-grep action; ActionError naming what is wrong."""
    return parse_action(action)


def is_valid_action(action: Any) -> bool:
    try:
        validate_action(action)
    except ActionError:
        return False
    return True


def apply_action(code: str, action: Any) -> str:
    """Apply an ast-grep action offline (ast-grep-py); ActionError with the reason."""
    return _apply(code, action)


def canonical_action(action: Any) -> str:
    """The training target: the canonical rule YAML."""
    return validate_action(action).rule_yaml()


# -- loading and validation ---------------------------------------------------------------


def parse_record(obj: Any, source: str, row: int) -> Edit:
    """Validate one record; DataError names the file, the row and the field."""
    if not isinstance(obj, Mapping):
        raise DataError(source, row, None, "must be a JSON object")
    for key in REQUIRED:
        if key not in obj:
            raise DataError(source, row, key, "missing")
    for key in ("id", "instruction", "pre", "post"):
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise DataError(source, row, key, "must be a non-empty string")
    if obj["pre"] == obj["post"]:
        raise DataError(source, row, "post", "is identical to pre (not an edit)")
    actions = obj["actions"]
    if not isinstance(actions, list) or not actions:
        raise DataError(source, row, "actions", "must be a non-empty list of ast-grep rules")
    code = obj["pre"]
    clean = []
    for i, action in enumerate(actions):
        try:
            rule = validate_action(action)
            code = apply_action(code, rule)
        except ActionError as exc:
            raise DataError(source, row, f"actions[{i}]", str(exc)) from None
        clean.append(rule)
    if code != obj["post"]:
        raise DataError(source, row, "actions", "applied to pre they do not produce post")
    return Edit(
        id=obj["id"],
        instruction=obj["instruction"].strip(),
        pre=obj["pre"],
        post=obj["post"],
        actions=tuple(clean),
        lang=str(obj.get("lang", "python")),
        source=str(obj.get("source", "handwritten")),
    )


def load_edits(path: str | Path, extra: Iterable[Mapping[str, Any]] = ()) -> list[Edit]:
    """All records of a JSONL file (plus ``extra`` rows, e.g. generated ones), validated;
    duplicate ids are an error."""
    source = str(path)
    edits: list[Edit] = []
    seen: dict[str, int] = {}
    rows: list[tuple[str, int, Any]] = []
    for i, line in enumerate(Path(path).read_text("utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            rows.append((source, i, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(source, i, None, f"invalid JSON: {exc.msg}") from None
    rows += [("generated", i, obj) for i, obj in enumerate(extra)]
    for src, i, obj in rows:
        edit = parse_record(obj, src, i)
        if edit.id in seen:
            raise DataError(src, i, "id", f"duplicate of row {seen[edit.id]}")
        seen[edit.id] = i
        edits.append(edit)
    if not edits:
        raise DataError(source, None, None, "no records")
    return edits


def split(
    edits: Sequence[Edit], seed: int = 0, fractions: tuple[float, float] = (0.7, 0.15)
) -> dict[str, list[Edit]]:
    """Deterministic train/valid/test split by ``sha256(seed:id)`` order."""
    ordered = sorted(edits, key=lambda e: hashlib.sha256(f"{seed}:{e.id}".encode()).hexdigest())
    n = len(ordered)
    n_train = max(1, round(n * fractions[0]))
    n_valid = max(1, round(n * fractions[1])) if n - n_train > 1 else 0
    return {
        "train": ordered[:n_train],
        "valid": ordered[n_train : n_train + n_valid],
        "test": ordered[n_train + n_valid :],
    }


def changed_lines(a: str, b: str) -> int:
    diff = difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
    return sum(1 for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---")))


def split_stats(splits: Mapping[str, Sequence[Edit]]) -> dict[str, dict[str, float]]:
    """Per split: records, actions, mean lines before/after, mean changed lines."""

    def mean(xs: Iterable[float]) -> float:
        xs = list(xs)
        return round(sum(xs) / len(xs), 3) if xs else 0.0

    return {
        name: {
            "records": len(es),
            "handwritten": sum(1 for e in es if e.source == "handwritten"),
            "generated": sum(1 for e in es if e.source.startswith("generated")),
            "actions": sum(len(e.actions) for e in es),
            "multi_step": sum(1 for e in es if len(e.actions) > 1),
            "mean_pre_lines": mean(e.pre.count("\n") for e in es),
            "mean_post_lines": mean(e.post.count("\n") for e in es),
            "mean_changed_lines": mean(changed_lines(e.pre, e.post) for e in es),
            "mean_instruction_words": mean(len(e.instruction.split()) for e in es),
        }
        for name, es in splits.items()
    }


# -- training rows --------------------------------------------------------------------------


def user_prompt(instruction: str, code: str) -> str:
    return f"{instruction}\n```python\n{code}```"


def stage0_row(e: Edit) -> dict[str, Any]:
    """SFT stage 0, chat format: system / user (instruction + pre) / assistant (post)."""
    return {
        "id": e.id,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user_prompt(e.instruction, e.pre)},
            {"role": "assistant", "content": e.post},
        ],
    }


def action_observation(e: Edit, step: int) -> str:
    """What the action policy sees at ``step``: the instruction and the current code."""
    return user_prompt(e.instruction, e.states()[step]) + "\n" + ACTION_SYSTEM_HINT


def stage1_rows(e: Edit) -> list[dict[str, Any]]:
    """SFT stage 1: one row per step, user (observation) → assistant (JSON action)."""
    return [
        {
            "id": f"{e.id}#{i}",
            "messages": [
                {"role": "user", "content": action_observation(e, i)},
                {"role": "assistant", "content": canonical_action(a)},
            ],
        }
        for i, a in enumerate(e.actions)
    ]


# -- evaluation ----------------------------------------------------------------------------


def code_similarity(pred: str, ref: str) -> float:
    """difflib ratio of the two code strings (1.0 = identical)."""
    return difflib.SequenceMatcher(None, pred, ref, autojunk=False).ratio()


def score_code(pred: str, ref: str) -> dict[str, float]:
    p, r = pred.strip("\n"), ref.strip("\n")
    return {"exact_match": float(p == r), "similarity": code_similarity(p, r)}


def score_action(text: str, e: Edit, step: int) -> dict[str, Any]:
    """Parse the predicted ast-grep action and apply it offline to the step's code.

    ``valid``: a well-formed rule (YAML or CLI, known language, all fields); ``applies``:
    ast-grep matches it and the edited code parses; ``exact_match``: the edited code
    equals the reference state after the step; ``similarity``: difflib ratio of the edited
    (or, if it does not apply, unedited) code against that reference; ``action_exact``:
    the normalised action equals the reference one; ``reason``: why it is invalid or does
    not apply (``None`` when it does).
    """
    states = e.states()
    before, after = states[step], states[step + 1]
    reason = None
    try:
        rule = validate_action(text)
        valid = 1.0
    except ActionError as exc:
        rule, valid, reason = None, 0.0, str(exc)
    edited, applies = before, 0.0
    if rule is not None:
        try:
            edited, applies = apply_action(before, rule), 1.0
        except ActionError as exc:
            reason = str(exc)
    same = float(rule is not None and rule.fields() == e.actions[step].fields())
    return {
        "valid": valid,
        "applies": applies,
        **score_code(edited, after),
        "action_exact": same,
        "reason": reason,
    }

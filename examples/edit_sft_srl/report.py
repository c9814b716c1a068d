"""The Stage-2 training report (``reports/training/stage2.md``), written from a finished
pipeline's ``summary.json`` and its run directories: data, SFT stage 0/1 configs and
metrics, RL details (steps, reward curve, best checkpoint), lessons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kitchen.io import read_json, read_jsonl

CONFIG_KEYS = ("epochs", "batch_size", "learning_rate", "lr_schedule", "warmup_steps",
               "max_length", "seed")  # fmt: skip
RL_KEYS = ("num_steps", "groups_per_batch", "group_size", "learning_rate", "temperature",
           "loss_fn", "max_tokens", "eval_every", "checkpoint_every")  # fmt: skip


def _losses(run: Path) -> dict[str, Any]:
    rows = read_jsonl(run / "metrics.jsonl")
    loss = [r["loss"] for r in rows if "loss" in r]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    return {
        "steps": max((int(r.get("step", 0)) for r in rows), default=0),
        "loss_first": loss[0] if loss else None,
        "loss_last": loss[-1] if loss else None,
        "val_loss_last": val[-1] if val else None,
    }


def _f(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3f}" if abs(x) >= 0.01 or x == 0 else f"{x:.2g}"
    return str(x)


def _eval_row(label: str, ev: dict[str, Any]) -> str:
    keys = ("valid", "applies", "exact_match", "action_exact", "similarity")
    return f"| {label} | " + " | ".join(_f(ev.get(k)) for k in keys) + " |"


def stage2_report(work: Path, command: str) -> str:
    s = read_json(work / "summary.json")
    manifest = read_json(work / "data" / "manifest.json")
    lines = [
        "# Stage 2 report: edit-model SFT (stage 0 code, stage 1 ast-grep actions) + offline SRL",
        "",
        f"Written by `examples/edit_sft_srl` from `{command}` "
        f"(adapters `{s['adapters']}`, wall time {sum(s['seconds'].values()):.0f} s: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in s["seconds"].items())
        + ").",
        "",
        "## Data",
        "",
        f"- hand-written records: `{manifest['sources']['handwritten']}`",
        f"- generated records: {manifest['sources']['generated']['n']} "
        f"(`generate.py`, seed {manifest['seed']}: renames, call rewrites, argument swaps, "
        "import changes, method/attribute renames, print → logging, `is None`, keyword "
        "arguments, `len(x) == 0`; ~10 % two-step)",
        f"- split: sha256(seed:id) order, 70/15/15, seed {manifest['seed']}",
        "",
        "| split | records | hand-written | generated | actions | multi-step "
        "| mean changed lines |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, st in manifest["stats"].items():
        lines.append(
            f"| {name} | {st['records']} | {st['handwritten']} | {st['generated']} | "
            f"{st['actions']} | {st['multi_step']} | {st['mean_changed_lines']} |"
        )
    lines += ["", "## SFT", ""]
    lines += ["| stage | " + " | ".join(CONFIG_KEYS) + " | steps | loss first → last | val loss |"]
    lines += ["| --- " * (len(CONFIG_KEYS) + 4) + "|"]
    for stage in ("sft0", "sft1"):
        run = Path(s[stage]["run_dir"])
        cfg = read_json(run / "config.json")
        ls = _losses(run)
        lines.append(
            f"| {stage} | "
            + " | ".join(_f(cfg.get(k)) for k in CONFIG_KEYS)
            + f" | {ls['steps']} | {_f(ls['loss_first'])} → {_f(ls['loss_last'])} | "
            f"{_f(ls['val_loss_last'])} |"
        )
    model = read_json(Path(s["sft1"]["run_dir"]) / "config.json").get("model") or {}
    lines += ["", f"Model: `{model.get('config') or 'noop (hashed bigram)'}`.", ""]
    e0 = s["sft0"]["eval"]
    lines += [
        f"Stage 0 (edited code) on the first test tasks: exact match {_f(e0['exact_match'])}, "
        f"code similarity {_f(e0['similarity'])} (returning the code unedited: "
        f"{_f(e0['similarity_unedited'])}).",
        "",
        "Stage 1 (ast-grep actions) on the held-out test split, each predicted rule parsed "
        "and applied offline with ast-grep-py:",
        "",
        "| policy | valid | applies | exact match (code) | action exact | code similarity |",
        "| --- | --- | --- | --- | --- | --- |",
        _eval_row("untrained", s["sft1"]["eval_untrained"]),
        _eval_row("after SFT stage 1", s["sft1"]["eval"]),
        _eval_row("after offline SRL", s["rl"]["eval"]),
        "",
        "Why stage-1 predictions failed (counts): "
        f"untrained {s['sft1']['eval_untrained'].get('failures')}; "
        f"after SFT {s['sft1']['eval'].get('failures')}; "
        f"after SRL {s['rl']['eval'].get('failures')}.",
        "",
    ]
    t = s["teacher"]
    lines += [
        "## Teacher trajectories",
        "",
        f"{t['teacher']}: {t['requests']} requests in one batch, {t['steps_verified']}/"
        f"{t['steps_total']} steps verified ({t['verified_rate']:.0%}) by applying the action "
        f"with ast-grep; reasons: {t['reasons']}.",
        "",
    ]
    rl_run = Path(s["rl"]["run_dir"])
    cfg = read_json(rl_run / "config.json")
    rows = read_jsonl(rl_run / "metrics.jsonl")
    rewards = [(int(r["step"]), r["reward"]) for r in rows if "reward" in r]
    vals = [(int(r["step"]), r["val_reward"]) for r in rows if "val_reward" in r]
    ckpts = {int(c["step"]): c["name"] for c in read_jsonl(rl_run / "checkpoints.jsonl")}
    scored = [(v, st) for st, v in vals if st in ckpts]
    best = max(scored) if scored else None
    lines += [
        "## Offline SRL",
        "",
        "kitchen's RL workflow in offline mode on the verified steps, from the stage-1 state; "
        "reward `R = 0.7·S_field + 0.3·S_str` clipped to [-0.2, 1] (`S_field`: share of "
        "id / language / rule.pattern / fix equal to the teacher's; `S_str`: difflib ratio of "
        "the canonical rule YAML), -0.2 for invalid YAML, an unknown language, missing fields "
        "or a rule that does not apply to the observed code.",
        "",
        "Config: " + ", ".join(f"{k}={_f(cfg.get(k))}" for k in RL_KEYS),
        "",
        "| step | " + " | ".join(str(st) for st, _ in rewards) + " |",
        "| --- " * (len(rewards) + 1) + "|",
        "| train reward | " + " | ".join(f"{r:.3f}" for _, r in rewards) + " |",
        "",
        "Validation reward (held-out groups of the verified steps): "
        + ", ".join(f"step {st}: {v:.3f}" for st, v in vals),
        "",
        f"Best checkpoint: {ckpts[best[1]]} (step {best[1]}, val_reward {best[0]:.3f})"
        if best
        else (
            f"Best checkpoint: the final weights (step {vals[-1][0]}, val_reward "
            f"{vals[-1][1]:.3f}; no intermediate checkpoint was evaluated)"
            if vals
            else "Best checkpoint: none evaluated."
        ),
        "",
        f"Invalid actions during RL (reason: count): {s['rl'].get('invalid_actions')}.",
        "",
        "Curves: `sft0.png`, `sft1.png`, `rl.png` in the work directory (`kitchen report`).",
        "",
    ]
    return "\n".join(lines)

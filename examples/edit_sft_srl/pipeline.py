"""Edit-model SFT + step-wise offline RL, end to end on kitchen recipes.

    prepare   load + validate edit records, seeded split, per-split stats, training rows
    sft0      kitchen supervised workflow on chat rows (system / user: instruction + pre →
              assistant: post); finish stage: greedy generations on the test split scored by
              exact match and difflib code similarity
    sft1      the same workflow on ast-grep actions (user: instruction + current code →
              assistant: rule YAML with id, language, rule.pattern, fix); the untrained
              weights and the trained ones both evaluated on the test split, actions applied
              offline with ast-grep-py (valid / applies / exact match / similarity); saves
              its state for the RL stage
    teacher   every step of the train/valid episodes sent to a teacher SamplingClient in
              one batch; answers applied offline; only verified steps are kept
    rl        kitchen's RL workflow in offline mode on the verified steps, starting from the
              sft1 weights, with the ast-grep action-similarity reward (R = 0.7·S_field +
              0.3·S_str, -0.2 for an invalid action, logged with its reason); the final
              policy evaluated on the test split like sft1
    report    ``kitchen report`` PNGs of the loss and reward curves; summary.json

``python -m examples.edit_sft_srl --work-dir out/edit --adapters noop`` (seconds), or
``--adapters hf`` for a tiny from-config Llama with a BPE tokenizer trained on the records.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.edit_sft_srl import actions as A
from examples.edit_sft_srl import records as R
from examples.edit_sft_srl.generate import generate
from examples.edit_sft_srl.teacher import ScriptedTeacher, collect_trajectories
from pydantic import Field

from kitchen import Context, Recipe, run_recipe, workflow
from kitchen.dsl import stage
from kitchen.io import append_jsonl, atomic_write_json, read_jsonl, rewrite_jsonl
from kitchen.ports.types import ModelInput, SamplingParams
from kitchen.rl.rewards import INVALID_ACTION_REWARD
from kitchen.telemetry.logging import default_logger
from kitchen.workflows.reinforcement import RLConfig, rl_workflow
from kitchen.workflows.supervised import SupervisedConfig, supervised_workflow

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "edits.jsonl"
REWARD = "examples.edit_sft_srl.pipeline:edit_action_reward"
VERIFIER = "examples.edit_sft_srl.pipeline:verified_rule"

#: A from-config Llama small enough for CPU (used with --adapters hf). ``vocab_size`` is
#: set to the tokenizer's (a small BPE trained on the records: fewer rows of the embedding
#: to learn, each seen more often, which a from-scratch model needs).
TINY_HF = {
    "config": {
        "model_type": "llama",
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
        "vocab_size": 512,
        "tie_word_embeddings": True,
    },
    "mode": "full",
}
VOCAB = 512
#: Generation budgets: a rule YAML is ~40 tokens (at most ~90) with this tokenizer; stage 0
#: writes whole functions, so only the first STAGE0_EVAL test tasks are generated for it.
ACTION_TOKENS = 100
STAGE0_EVAL = 24


# -- configs: the built-in ones plus the tokenizer the hf wiring should load ---------------


class EditSFTConfig(SupervisedConfig):
    tokenizer: str | None = Field(None, description="tokenizer directory (hf adapters)")


class EditRLConfig(RLConfig):
    tokenizer: str | None = Field(None, description="tokenizer directory (hf adapters)")


# -- the reward --------------------------------------------------------------------------

#: Why actions scored -0.2, counted over this process (the RL stage writes them out).
INVALID_REASONS: Counter[str] = Counter()
_CODE = re.compile(r"```python\n(.*?)```", re.S)
_log = default_logger("examples.edit_sft_srl")


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0][:60]


def edit_action_reward(text: str, info: dict[str, Any]) -> float:
    """The ast-grep action-similarity reward: ``R = 0.7·S_field + 0.3·S_str`` clipped to
    [-0.2, 1], where ``S_field`` is the share of the normalised fields (id, language,
    rule.pattern, fix) equal to the reference's and ``S_str`` the difflib ratio of the
    canonical rule YAML strings. -0.2 for an invalid action (invalid YAML, unknown
    language, missing fields) or one that does not apply to the observed code with
    ast-grep; each such case is logged with its reason."""
    ref = A.parse_action(info["reference"])
    try:
        pred = A.parse_action(text)
        m = _CODE.search(str(info.get("observation", "")))
        if m is not None:
            A.apply_action(m.group(1), pred)
    except A.ActionError as exc:
        INVALID_REASONS[_reason_kind(str(exc))] += 1
        _log.debug("invalid_action", reason=str(exc), action=text[:120])
        return INVALID_ACTION_REWARD
    score = 0.7 * A.field_score(pred, ref) + 0.3 * A.string_score(pred, ref)
    return min(1.0, max(INVALID_ACTION_REWARD, score))


def verified_rule(step: dict[str, Any], trajectory: dict[str, Any]) -> bool:
    """The offline verifier: the teacher step was verified (applying its action gave the
    reference next state) and the action is a valid ast-grep rule."""
    flag = step.get("verified", trajectory.get("verified", True))
    return bool(flag) and R.is_valid_action(step["action"])


# -- evaluation stages (the supervised workflow's ``finish``) ------------------------------


def _prompt_tokens(tok: Any, messages: list[dict[str, str]]) -> list[int]:
    return list(tok.render_chat(messages, add_generation_prompt=True).tokens)


@dataclass
class EvalEdits:
    """Greedy generations on the test split, scored offline; all requests are submitted
    before any is awaited. ``mode``: "code" (stage 0) or "action" (stage 1)."""

    edits: list[R.Edit]
    mode: str
    max_tokens: int = 256
    save_state: str | None = None
    #: the state key (and predictions file) of the result: "eval", "eval_untrained", ...
    key: str = "eval"
    name: str = "evaluate_edits"

    def __post_init__(self) -> None:
        self.name = f"evaluate_edits_{self.key}"

    def __call__(self, ctx: Context) -> dict[str, Any]:
        tok = ctx.ports.require("tokenizer")
        sampler = ctx.ports.require("training").save_weights_and_get_sampling_client("eval")
        stop = [tok.eos_token_id] if tok.eos_token_id is not None else None
        params = SamplingParams(max_tokens=self.max_tokens, temperature=0.0, stop=stop)
        jobs: list[tuple[R.Edit, int, Any]] = []
        for e in self.edits:
            if self.mode == "code":
                msgs = R.stage0_row(e)["messages"][:-1]
                jobs.append(
                    (
                        e,
                        0,
                        sampler.sample(ModelInput.from_ints(_prompt_tokens(tok, msgs)), 1, params),
                    )
                )
            else:
                for i, row in enumerate(R.stage1_rows(e)):
                    prompt = _prompt_tokens(tok, row["messages"][:-1])
                    jobs.append((e, i, sampler.sample(ModelInput.from_ints(prompt), 1, params)))
        rows = []
        for e, i, fut in jobs:
            text = tok.decode(list(fut.result().sequences[0].tokens))
            score = (
                R.score_code(text, e.post) if self.mode == "code" else R.score_action(text, e, i)
            )
            rows.append({"id": e.id, "step": i, "prediction": text, **score})
        keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
        summary = {f"{self.key}/{k}": sum(r[k] for r in rows) / len(rows) for k in keys}
        if self.mode == "code":  # the bar: returning the code unedited
            summary[f"{self.key}/similarity_unedited"] = sum(
                R.code_similarity(e.pre.strip("\n"), e.post.strip("\n")) for e in self.edits
            ) / len(self.edits)
        ctx.metrics.log(summary, step=int(ctx.state.get("step", 0)))
        if ctx.run is not None:
            name = "predictions.jsonl" if self.key == "eval" else f"predictions_{self.key}.jsonl"
            rewrite_jsonl(ctx.run.artifacts_dir / name, rows)
        result = {k.split("/", 1)[1]: round(v, 4) for k, v in summary.items()}
        if self.mode == "action":
            reasons = Counter(_reason_kind(r["reason"]) for r in rows if r["reason"])
            result["failures"] = dict(reasons.most_common())  # type: ignore[assignment]
        out: dict[str, Any] = {self.key: result}
        if self.save_state:
            out["saved_state"] = (
                ctx.ports.require("training").save_state(self.save_state).result().path
            )
        return out


@dataclass
class PublishRows:
    """Put the prepared JSONL rows into the DatasetStore port (the noop store is in memory,
    the hf one writes the file) and point the supervised workflow at them (replayed)."""

    files: dict[str, Path]
    #: Serve the rows from kitchen's in-memory store. The RL workflow's offline env loads
    #: trajectories through the dataset port, and HfDatasetStore only accepts training-row
    #: formats (chat / prompt+completion / text / preference), not ``{"steps": [...]}``.
    in_memory: bool = False
    name: str = "publish_rows"

    def __call__(self, ctx: Context) -> dict[str, Any]:
        if self.in_memory:
            from kitchen.adapters.noop import NoopDatasetStore

            ctx.ports.dataset = NoopDatasetStore()
        store = ctx.ports.require("dataset")
        return {key: store.save(read_jsonl(path), str(path)) for key, path in self.files.items()}


@dataclass
class LoadState:
    """Start from another run's saved state (replayed: a resumed run then restores its own
    checkpoint on top, and a KL reference snapshot would be these weights)."""

    path: str
    name: str = "load_sft_state"

    def __call__(self, ctx: Context) -> None:
        ctx.ports.require("training").load_state(self.path).result()


# -- the pipeline --------------------------------------------------------------------------


@dataclass
class Settings:
    work: Path
    adapters: str = "noop"
    seed: int = 0
    #: stage 0 (edited code) is the expensive one to generate: fewer epochs by default
    sft0_epochs: int = 1
    sft1_epochs: int = 8
    rl_steps: int = 10
    data: Path = DATA
    #: generated edit tasks added to the hand-written records
    generated: int = 600
    #: test tasks evaluated (0 = the whole test split)
    eval_limit: int = 0
    batch_size: int = 16
    sft_lr: float = 3e-3
    #: the command line, for the stage report
    command: str = "python -m examples.edit_sft_srl"

    def model(self) -> dict[str, Any]:
        return TINY_HF if self.adapters == "hf" else {}


def log(msg: str) -> None:
    print(msg, flush=True)


def prepare(s: Settings) -> dict[str, Any]:
    generated = generate(s.generated, seed=s.seed) if s.generated else []
    out = s.work / "data"
    rewrite_jsonl(out / "generated.jsonl", generated)
    edits = R.load_edits(s.data, generated)
    splits = R.split(edits, seed=s.seed)
    stats = R.split_stats(splits)
    for name, es in splits.items():
        rewrite_jsonl(out / f"stage0_{name}.jsonl", [R.stage0_row(e) for e in es])
        rewrite_jsonl(out / f"stage1_{name}.jsonl", [r for e in es for r in R.stage1_rows(e)])
    manifest = {
        "sources": {
            "handwritten": str(s.data),
            "generated": {"path": str(out / "generated.jsonl"), "n": len(generated)},
        },
        "seed": s.seed,
        "splits": {k: [e.id for e in v] for k, v in splits.items()},
        "stats": stats,
    }
    atomic_write_json(out / "manifest.json", manifest)
    tokenizer = None
    if s.adapters == "hf":
        from kitchen.adapters.hf.tokenizer import HfTokenizer

        train = splits["train"]
        texts = [t for e in train for t in (R.user_prompt(e.instruction, e.pre), e.post)]
        texts += [a.rule_yaml() for e in train for a in e.actions]
        texts += [R.SYSTEM, R.ACTION_SYSTEM_HINT]
        tokenizer = str(s.work / "tokenizer")
        HfTokenizer.train_bpe(texts, VOCAB, min_frequency=2).save(tokenizer)
    return {"splits": splits, "stats": stats, "tokenizer": tokenizer}


def _test(s: Settings, data: dict[str, Any]) -> list[R.Edit]:
    test = data["splits"]["test"]
    return test[: s.eval_limit] if s.eval_limit else test


def sft(
    s: Settings,
    name: str,
    data: dict[str, Any],
    evaluator: EvalEdits,
    baseline: EvalEdits | None = None,
    epochs: int = 1,
) -> dict[str, Any]:
    kind = "stage0" if evaluator.mode == "code" else "stage1"
    train, valid = (s.work / "data" / f"{kind}_{x}.jsonl" for x in ("train", "valid"))
    publish = stage(
        PublishRows({"train_source": train, "eval_source": valid}),
        replay=True,
        outputs=["train_source", "eval_source"],
    )
    before = [stage(baseline, outputs=[baseline.key])] if baseline is not None else []
    recipe = Recipe(
        name=f"edit_{name}",
        description=f"edit-model SFT {kind}",
        config_model=EditSFTConfig,
        build=lambda cfg: supervised_workflow(
            cfg,
            name=f"edit_{name}",
            setup=[publish],
            before_training=before,
            finish=[stage(evaluator, outputs=[evaluator.key])],
        ),
    )
    config = {
        "dataset": str(train),
        "epochs": epochs,
        "batch_size": s.batch_size,
        "learning_rate": 0.05 if s.adapters == "noop" else s.sft_lr,
        "lr_schedule": "linear",
        "warmup_steps": 10,
        "max_length": 1024 if s.adapters == "noop" else 256,  # noop tokens are bytes
        "checkpoint_every": 0,
        "seed": s.seed,
        "model": s.model(),
        "tokenizer": data["tokenizer"],
    }
    res = run_recipe(
        recipe,
        adapters=s.adapters,
        config=config,
        run_dir=s.work / "runs" / name,
        cache_dir=s.work / ".cache",
    )
    return {"run_dir": str(res.run_dir.root), **res.context.state}


def _tokenizer(data: dict[str, Any]) -> Any:
    if data["tokenizer"]:
        from kitchen.adapters.hf.tokenizer import HfTokenizer

        return HfTokenizer.load(data["tokenizer"])
    from kitchen.adapters.noop import NoopTokenizer

    return NoopTokenizer()


def teacher_batch(s: Settings, data: dict[str, Any]) -> dict[str, Any]:
    """Collect teacher actions for every train/valid step in one batch; keep verified ones."""
    edits = data["splits"]["train"] + data["splits"]["valid"]
    tok = _tokenizer(data)
    episodes = [(e.id, [R.action_observation(e, i) for i in range(len(e.actions))]) for e in edits]
    answers = {R.action_observation(e, i): a for e in edits for i, a in enumerate(e.actions)}
    teacher = ScriptedTeacher(answers, tok, seed=s.seed)
    t0 = time.perf_counter()
    try:
        got = collect_trajectories(teacher, tok, episodes)
    finally:
        teacher.close()
    seconds = time.perf_counter() - t0
    rows, reasons = [], {}
    kept = 0
    for e, (_, observations), answers_per_step in zip(edits, episodes, got, strict=True):
        states = e.states()
        steps = []
        for i, (obs, (text,)) in enumerate(zip(observations, answers_per_step, strict=True)):
            try:
                verified = R.apply_action(states[i], text) == states[i + 1]
                reason = "ok" if verified else "wrong result"
            except R.ActionError as exc:
                verified, reason = False, _reason_kind(str(exc))
            reasons[reason] = reasons.get(reason, 0) + 1
            kept += verified
            steps.append(
                {"observation": obs, "action": text, "verified": verified, "reason": reason}
            )
        rows.append({"id": e.id, "steps": steps})
    out = s.work / "teacher"
    rewrite_jsonl(out / "trajectories.jsonl", rows)
    verified_rows = [
        {"id": r["id"], "steps": [st for st in r["steps"] if st["verified"]]} for r in rows
    ]
    rewrite_jsonl(out / "verified.jsonl", [r for r in verified_rows if r["steps"]])
    total = sum(len(r["steps"]) for r in rows)
    stats = {
        "teacher": teacher.model_name,
        "requests": teacher.requests,
        "steps_total": total,
        "steps_verified": kept,
        "verified_rate": round(kept / total, 4),
        "reasons": reasons,
        "seconds": round(seconds, 3),
    }
    atomic_write_json(out / "stats.json", stats)
    return {"path": str(out / "trajectories.jsonl"), **stats}


def rl(s: Settings, data: dict[str, Any], init_state: str, trajectories: str) -> dict[str, Any]:
    evaluator = EvalEdits(_test(s, data), "action", ACTION_TOKENS, key="eval")
    recipe = Recipe(
        name="edit_rl",
        description="offline step-wise RL on verified teacher actions",
        config_model=EditRLConfig,
        build=lambda cfg: workflow(
            "edit_rl",
            stage(PublishRows({"offline_rows": Path(trajectories)}, in_memory=True), replay=True),
            stage(LoadState(init_state), replay=True),
            *rl_workflow(cfg).body,
            stage(evaluator, outputs=["eval"]),
        ),
    )
    config = {
        "env": "offline",
        "offline_dataset": trajectories,
        "verifier": VERIFIER,
        "step_reward": REWARD,
        "chat": True,
        "max_tokens": ACTION_TOKENS,
        "num_steps": s.rl_steps,
        "groups_per_batch": 8,
        "group_size": 4,
        "eval_groups": 8,
        "temperature": 1.0,
        "learning_rate": 0.05 if s.adapters == "noop" else 2e-4,
        # evaluate where it checkpoints: the best checkpoint is the best val_reward
        "eval_every": max(1, s.rl_steps // 4),
        "checkpoint_every": max(1, s.rl_steps // 4),
        "seed": s.seed,
        "model": s.model(),
        "tokenizer": data["tokenizer"],
    }
    INVALID_REASONS.clear()
    res = run_recipe(
        recipe,
        adapters=s.adapters,
        config=config,
        run_dir=s.work / "runs" / "rl",
        cache_dir=s.work / ".cache",
    )
    invalid = dict(INVALID_REASONS.most_common())
    atomic_write_json(s.work / "rl_invalid_actions.json", invalid)
    return {
        "run_dir": str(res.run_dir.root),
        **{k: v for k, v in res.context.state.items() if k in ("step", "val_reward", "eval")},
        "reward": res.context.metrics.last.get("reward"),
        "invalid_actions": invalid,
    }


def report(run_dir: str, out: Path) -> str:
    """``kitchen report RUN_DIR --out FILE.png`` (the CLI, in process)."""
    from kitchen.cli.main import main as kitchen

    rc = kitchen(["report", run_dir, "--out", str(out)])
    if rc != 0:
        raise RuntimeError(f"kitchen report {run_dir} failed with exit code {rc}")
    return str(out)


def _fmt(ev: dict[str, Any]) -> str:
    keys = ("valid", "applies", "exact_match", "action_exact", "similarity")
    return ", ".join(f"{k} {ev[k]:.3f}" for k in keys if k in ev)


def run_all(s: Settings) -> dict[str, Any]:
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        log(f"==> {name}")
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - t0, 2)
        return value

    data = timed("prepare", prepare, s)
    for name, st in data["stats"].items():
        log(
            f"    {name:<5} {st['records']:>4} records ({st['handwritten']} hand-written), "
            f"{st['actions']:>4} actions, {st['mean_changed_lines']} changed lines on average"
        )
    test = _test(s, data)
    sft0 = timed(
        "sft0", sft, s, "sft0", data, EvalEdits(test[:STAGE0_EVAL], "code", max_tokens=120),
        epochs=s.sft0_epochs,
    )  # fmt: skip
    log(f"    stage 0 on test: {sft0['eval']}")
    sft1 = timed(
        "sft1",
        sft,
        s,
        "sft1",
        data,
        EvalEdits(test, "action", ACTION_TOKENS, save_state="sft1"),
        baseline=EvalEdits(test, "action", ACTION_TOKENS, key="eval_untrained"),
        epochs=s.sft1_epochs,
    )
    log(f"    stage 1 on test, untrained: {_fmt(sft1['eval_untrained'])}")
    log(f"    stage 1 on test, trained:   {_fmt(sft1['eval'])}")
    traj = timed("teacher", teacher_batch, s, data)
    log(
        f"    teacher: {traj['steps_verified']}/{traj['steps_total']} steps verified "
        f"({traj['requests']} requests in one batch, {traj['seconds']} s)"
    )
    rl_out = timed("rl", rl, s, data, sft1["saved_state"], traj["path"])
    log(
        f"    rl: last reward {rl_out['reward']}, val_reward {rl_out.get('val_reward')}; "
        f"on test: {_fmt(rl_out['eval'])}"
    )
    reports = {
        name: timed(f"report {name}", report, run, s.work / f"{name}.png")
        for name, run in (
            ("sft0", sft0["run_dir"]),
            ("sft1", sft1["run_dir"]),
            ("rl", rl_out["run_dir"]),
        )
    }
    summary = {
        "adapters": s.adapters,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(s).items()},
        "data": {"stats": data["stats"], "manifest": str(s.work / "data" / "manifest.json")},
        "sft0": {"run_dir": sft0["run_dir"], "eval": sft0["eval"]},
        "sft1": {
            "run_dir": sft1["run_dir"],
            "eval_untrained": sft1["eval_untrained"],
            "eval": sft1["eval"],
            "state": sft1["saved_state"],
        },
        "teacher": traj,
        "rl": rl_out,
        "reports": reports,
        "seconds": timings,
    }
    atomic_write_json(s.work / "summary.json", summary)
    append_jsonl(s.work / "history.jsonl", {"time": time.time(), "seconds": timings})
    from examples.edit_sft_srl.report import stage2_report

    stage2 = s.work / "reports" / "training" / "stage2.md"
    stage2.parent.mkdir(parents=True, exist_ok=True)
    stage2.write_text(stage2_report(s.work, s.command))
    log(f"    stage report: {stage2}")
    log(f"==> done in {sum(timings.values()):.0f} s: {s.work / 'summary.json'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m examples.edit_sft_srl", description=__doc__.split("\n")[0]
    )
    d = Settings(Path("."))
    p.add_argument("--work-dir", type=Path, default=Path("out/edit_sft_srl"))
    p.add_argument("--adapters", choices=("noop", "hf"), default="noop")
    p.add_argument("--data", type=Path, default=DATA, help="hand-written edit records (JSONL)")
    p.add_argument("--generated", type=int, default=d.generated, help="generated edit tasks")
    p.add_argument("--sft0-epochs", type=int, default=d.sft0_epochs)
    p.add_argument("--sft1-epochs", "--sft-epochs", type=int, default=d.sft1_epochs)
    p.add_argument("--rl-steps", type=int, default=d.rl_steps)
    p.add_argument("--eval-limit", type=int, default=d.eval_limit, help="0 = whole test split")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.sft_lr, help="SFT learning rate (hf)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if (a.work_dir / "runs").exists():
        print(f"error: {a.work_dir} already holds runs; choose another --work-dir", file=sys.stderr)
        return 2
    from kitchen.errors import KitchenError

    settings = Settings(
        a.work_dir,
        a.adapters,
        a.seed,
        sft0_epochs=a.sft0_epochs,
        sft1_epochs=a.sft1_epochs,
        rl_steps=a.rl_steps,
        data=a.data,
        generated=a.generated,
        eval_limit=a.eval_limit,
        batch_size=a.batch_size,
        sft_lr=a.lr,
        command=" ".join(["python -m examples.edit_sft_srl", *(argv or sys.argv[1:])]),
    )
    try:
        run_all(settings)
    except KitchenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, R.DataError) else 1
    return 0

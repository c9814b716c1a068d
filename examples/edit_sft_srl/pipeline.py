"""Edit-model SFT + step-wise offline RL, end to end on kitchen recipes.

    prepare   load + validate edit records, seeded split, per-split stats, training rows
    sft0      kitchen supervised workflow on chat rows (system / user: instruction + pre →
              assistant: post); finish stage: greedy generations on the test split scored by
              exact match and difflib code similarity
    sft1      the same workflow on structured actions (user: instruction + current code →
              assistant: {"search", "replace"} JSON); finish stage: actions applied offline
              (valid / applies / exact match / similarity); saves its state for the RL stage
    teacher   every step of the train/valid episodes sent to a teacher SamplingClient in
              one batch; answers applied offline; only verified steps are kept
    rl        kitchen's RL workflow in offline mode on the verified steps, starting from the
              sft1 weights, with the action-similarity reward (kitchen.rl.rewards)
    report    ``kitchen report`` PNGs of the loss and reward curves; summary.json

``python -m examples.edit_sft_srl --work-dir out/edit --adapters noop`` (seconds), or
``--adapters hf`` for a tiny from-config Llama with a BPE tokenizer trained on the records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.edit_sft_srl import records as R
from examples.edit_sft_srl.teacher import ScriptedTeacher, collect_trajectories
from pydantic import Field

from kitchen import Context, Recipe, run_recipe, workflow
from kitchen.dsl import stage
from kitchen.io import append_jsonl, atomic_write_json, read_jsonl, rewrite_jsonl
from kitchen.ports.types import ModelInput, SamplingParams
from kitchen.rl.rewards import action_similarity_reward
from kitchen.workflows.reinforcement import RLConfig, rl_workflow
from kitchen.workflows.supervised import SupervisedConfig, supervised_workflow

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "edits.jsonl"
REWARD = "examples.edit_sft_srl.pipeline:edit_action_reward"

#: A from-config Llama small enough for CPU (used with --adapters hf).
TINY_HF = {
    "config": {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "vocab_size": 512,
        "tie_word_embeddings": True,
    },
    "mode": "full",
}


# -- configs: the built-in ones plus the tokenizer the hf wiring should load ---------------


class EditSFTConfig(SupervisedConfig):
    tokenizer: str | None = Field(None, description="tokenizer directory (hf adapters)")


class EditRLConfig(RLConfig):
    tokenizer: str | None = Field(None, description="tokenizer directory (hf adapters)")


# -- the reward --------------------------------------------------------------------------


def edit_action_reward(text: str, info: dict[str, Any]) -> float:
    """kitchen's action-similarity reward, R = 0.7·S_field + 0.3·S_str clipped to
    [-0.2, 1]; -0.2 when the text is not a well-formed {"search", "replace"} action."""
    return action_similarity_reward(text, info["reference"], validate=R.is_valid_action)


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
    name: str = "evaluate_edits"

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
        summary = {f"eval/{k}": sum(r[k] for r in rows) / len(rows) for k in keys}
        if self.mode == "code":  # the bar: returning the code unedited
            summary["eval/similarity_unedited"] = sum(
                R.code_similarity(e.pre.strip("\n"), e.post.strip("\n")) for e in self.edits
            ) / len(self.edits)
        ctx.metrics.log(summary, step=int(ctx.state.get("step", 0)))
        if ctx.run is not None:
            rewrite_jsonl(ctx.run.artifacts_dir / "predictions.jsonl", rows)
        out: dict[str, Any] = {
            "eval": {k.split("/", 1)[1]: round(v, 4) for k, v in summary.items()}
        }
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
    sft_epochs: int = 3
    rl_steps: int = 6
    data: Path = DATA

    def model(self) -> dict[str, Any]:
        return TINY_HF if self.adapters == "hf" else {}


def log(msg: str) -> None:
    print(msg, flush=True)


def prepare(s: Settings) -> dict[str, Any]:
    edits = R.load_edits(s.data)
    splits = R.split(edits, seed=s.seed)
    stats = R.split_stats(splits)
    out = s.work / "data"
    for name, es in splits.items():
        rewrite_jsonl(out / f"stage0_{name}.jsonl", [R.stage0_row(e) for e in es])
        rewrite_jsonl(out / f"stage1_{name}.jsonl", [r for e in es for r in R.stage1_rows(e)])
    manifest = {
        "source": str(s.data),
        "seed": s.seed,
        "splits": {k: [e.id for e in v] for k, v in splits.items()},
        "stats": stats,
    }
    atomic_write_json(out / "manifest.json", manifest)
    tokenizer = None
    if s.adapters == "hf":
        from kitchen.adapters.hf.tokenizer import HfTokenizer

        texts = [t for e in edits for t in (e.instruction, e.pre, e.post)]
        texts += [json.dumps(a) for e in edits for a in e.actions] + [
            R.SYSTEM,
            R.ACTION_SYSTEM_HINT,
        ]
        tokenizer = str(s.work / "tokenizer")
        HfTokenizer.train_bpe(texts, 512, min_frequency=1).save(tokenizer)
    return {"splits": splits, "stats": stats, "tokenizer": tokenizer}


def sft(s: Settings, name: str, data: dict[str, Any], evaluator: EvalEdits) -> dict[str, Any]:
    kind = "stage0" if evaluator.mode == "code" else "stage1"
    train, valid = (s.work / "data" / f"{kind}_{x}.jsonl" for x in ("train", "valid"))
    publish = stage(
        PublishRows({"train_source": train, "eval_source": valid}),
        replay=True,
        outputs=["train_source", "eval_source"],
    )
    recipe = Recipe(
        name=f"edit_{name}",
        description=f"edit-model SFT {kind}",
        config_model=EditSFTConfig,
        build=lambda cfg: supervised_workflow(
            cfg, name=f"edit_{name}", setup=[publish], finish=[stage(evaluator, outputs=["eval"])]
        ),
    )
    config = {
        "dataset": str(train),
        "epochs": s.sft_epochs,
        "batch_size": 4,
        "learning_rate": 0.05 if s.adapters == "noop" else 3e-3,
        "max_length": 512,
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


def teacher_batch(s: Settings, data: dict[str, Any]) -> dict[str, Any]:
    """Collect teacher actions for every train/valid step in one batch; keep verified ones."""
    edits = data["splits"]["train"] + data["splits"]["valid"]
    if data["tokenizer"]:
        from kitchen.adapters.hf.tokenizer import HfTokenizer

        tok: Any = HfTokenizer.load(data["tokenizer"])
    else:
        from kitchen.adapters.noop import NoopTokenizer

        tok = NoopTokenizer()
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
                verified, reason = False, str(exc)
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
    recipe = Recipe(
        name="edit_rl",
        description="offline step-wise RL on verified teacher actions",
        config_model=EditRLConfig,
        build=lambda cfg: workflow(
            "edit_rl",
            stage(PublishRows({"offline_rows": Path(trajectories)}, in_memory=True), replay=True),
            stage(LoadState(init_state), replay=True),
            *rl_workflow(cfg).body,
        ),
    )
    config = {
        "env": "offline",
        "offline_dataset": trajectories,
        "verifier": "verified_flag",
        "step_reward": REWARD,
        "chat": True,
        "max_tokens": 160,
        "num_steps": s.rl_steps,
        "groups_per_batch": 4,
        "group_size": 4,
        "eval_groups": 4,
        "temperature": 1.0,
        "learning_rate": 0.05 if s.adapters == "noop" else 1e-3,
        "checkpoint_every": 3,
        "seed": s.seed,
        "model": s.model(),
        "tokenizer": data["tokenizer"],
    }
    res = run_recipe(
        recipe,
        adapters=s.adapters,
        config=config,
        run_dir=s.work / "runs" / "rl",
        cache_dir=s.work / ".cache",
    )
    return {
        "run_dir": str(res.run_dir.root),
        **{k: v for k, v in res.context.state.items() if k in ("step", "val_reward")},
        "reward": res.context.metrics.last.get("reward"),
    }


def report(run_dir: str, out: Path) -> str:
    """``kitchen report RUN_DIR --out FILE.png`` (the CLI, in process)."""
    from kitchen.cli.main import main as kitchen

    rc = kitchen(["report", run_dir, "--out", str(out)])
    if rc != 0:
        raise RuntimeError(f"kitchen report {run_dir} failed with exit code {rc}")
    return str(out)


def run_all(s: Settings) -> dict[str, Any]:
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        log(f"==> {name}")
        t0 = time.perf_counter()
        value = fn(*args)
        timings[name] = round(time.perf_counter() - t0, 2)
        return value

    data = timed("prepare", prepare, s)
    for name, st in data["stats"].items():
        log(
            f"    {name:<5} {st['records']:>3} records, {st['actions']:>3} actions, "
            f"{st['mean_changed_lines']} changed lines on average"
        )
    test = data["splits"]["test"]
    sft0 = timed("sft0", sft, s, "sft0", data, EvalEdits(test, "code", max_tokens=200))
    log(f"    stage 0 on test: {sft0['eval']}")
    sft1 = timed("sft1", sft, s, "sft1", data, EvalEdits(test, "action", 160, save_state="sft1"))
    log(f"    stage 1 on test: {sft1['eval']}")
    traj = timed("teacher", teacher_batch, s, data)
    log(
        f"    teacher: {traj['steps_verified']}/{traj['steps_total']} steps verified "
        f"({traj['requests']} requests in one batch, {traj['seconds']} s)"
    )
    rl_out = timed("rl", rl, s, data, sft1["saved_state"], traj["path"])
    log(f"    rl: last reward {rl_out['reward']}, val_reward {rl_out.get('val_reward')}")
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
        "data": {"stats": data["stats"], "manifest": str(s.work / "data" / "manifest.json")},
        "sft0": {"run_dir": sft0["run_dir"], "eval": sft0["eval"]},
        "sft1": {"run_dir": sft1["run_dir"], "eval": sft1["eval"], "state": sft1["saved_state"]},
        "teacher": traj,
        "rl": rl_out,
        "reports": reports,
        "seconds": timings,
    }
    atomic_write_json(s.work / "summary.json", summary)
    append_jsonl(s.work / "history.jsonl", {"time": time.time(), "seconds": timings})
    log(f"==> done: {s.work / 'summary.json'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m examples.edit_sft_srl", description=__doc__.split("\n")[0]
    )
    p.add_argument("--work-dir", type=Path, default=Path("out/edit_sft_srl"))
    p.add_argument("--adapters", choices=("noop", "hf"), default="noop")
    p.add_argument("--data", type=Path, default=DATA, help="edit records (JSONL)")
    p.add_argument("--sft-epochs", type=int, default=3)
    p.add_argument("--rl-steps", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if (a.work_dir / "runs").exists():
        print(f"error: {a.work_dir} already holds runs; choose another --work-dir", file=sys.stderr)
        return 2
    from kitchen.errors import KitchenError

    try:
        run_all(Settings(a.work_dir, a.adapters, a.seed, a.sft_epochs, a.rl_steps, a.data))
    except KitchenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, R.DataError) else 1
    return 0

"""The model half of cookbook example 1: QLoRA SFT → prompt-suite eval (base vs adapter) → export.

    tokenizer (BPE on the dataset's train text) →
    run_recipe(supervised_workflow(
        before_training=[suite eval of the base weights],
        finish=[suite eval of the trained adapter]), adapters="hf", model.mode=qlora)
    → export_run(merged=True): adapter safetensors + merged transformers model
    → suite eval of the merged model (plain transformers load) → eval/report.json

The base model is a tiny Llama built from config (``kitchen.recipes.defaults.TINY_HF_MODEL``
with ``mode: qlora``: 4-bit NF4 base weights through bitsandbytes, LoRA on every linear
projection), so the example runs on CPU with no downloads. Real use points ``model`` at a
pretrained model instead (``{"path": DIR, "mode": "qlora"}`` or ``{"hub_id": ...}``) and
drops the tokenizer training: the model's own tokenizer is used.

The prompt suite is the dataset's held-out ``test.jsonl``. Each prompt is scored by the mean
per-token loss (negative log-likelihood, through ``SamplingClient.compute_logprobs``) of its
reference answer, exactly the tokens SFT trains on (``render_chat`` weights); a few prompts
are also answered greedily. "base" is a snapshot of the weights before the first step (the
LoRA B matrices start at zero, so these are the base model's outputs); "adapter" is a
snapshot after the last step, both over the same 4-bit base. With a from-scratch base the
gap mostly says the adapter learned tinyroute's language at all; with a pretrained base it
measures what the domain data added.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitchen import Context, Recipe, run_recipe
from kitchen.dsl import stage
from kitchen.io import atomic_write_json, read_json, read_jsonl
from kitchen.ports.types import ModelInput, SamplingParams
from kitchen.recipes.defaults import TINY_HF_MODEL
from kitchen.workflows.supervised import SupervisedConfig, supervised_workflow

#: The from-config base model in QLoRA mode: kitchen's tiny Llama with untied input/output
#: embeddings, and LoRA on every linear projection *and* the output head. A from-scratch
#: base has a random output head, so the adapter must reach it to learn much in 40 steps;
#: untied, the head's LoRA delta merges into the head alone (tied, merging would also move
#: the input embeddings and the merged model would no longer match the adapter). For a
#: pretrained model use ``{"path": DIR, "mode": "qlora"}`` (or ``hub_id``) and the default
#: ``target_modules: all-linear``.
TINY_QLORA: dict[str, Any] = {
    **TINY_HF_MODEL,
    "config": {**TINY_HF_MODEL["config"], "tie_word_embeddings": False},
    "mode": "qlora",
    "lora": {
        "rank": 16,
        "alpha": 32,
        "target_modules": [
            *("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            "lm_head",
        ],
    },
}

#: SFT settings small enough for a CPU run in well under a minute.
SFT_CONFIG: dict[str, Any] = {
    "max_steps": 40,  # epochs are derived from it (see run_model)
    "batch_size": 8,
    "learning_rate": 1e-2,
    "lr_schedule": "linear",
    "warmup_steps": 2,
    "max_length": 192,
    "eval_every": 0,
    "checkpoint_every": 20,
    "seed": 0,
}

#: Prompts of the suite answered greedily in the report (the rest are only scored).
GENERATIONS = 2
GEN_TOKENS = 40


def _texts(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [m["content"] for r in rows for m in r["messages"]]


def train_tokenizer(dataset: Path, directory: Path, vocab_size: int) -> str:
    """A byte-level BPE on the train split's text (a from-config model has no tokenizer)."""
    from kitchen.adapters.hf.tokenizer import HfTokenizer

    if not (directory / "tokenizer.json").is_file():
        rows = read_jsonl(dataset / "train.jsonl")
        HfTokenizer.train_bpe(_texts(rows), vocab_size, min_frequency=2).save(directory)
    return str(directory)


# -- the prompt suite -------------------------------------------------------------------------


def score_suite(
    client: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], max_length: int
) -> dict[str, Any]:
    """Mean per-token loss of each reference answer under ``client`` (a SamplingClient),
    and greedy answers to the first :data:`GENERATIONS` prompts.

    Every ``compute_logprobs`` / ``sample`` call is submitted before any is awaited."""
    scored = []
    for row in rows:
        r = tokenizer.render_chat(row["messages"], train_on="last_assistant")
        tokens, weights = list(r.tokens)[:max_length], list(r.weights)[:max_length]
        scored.append((tokens, weights, client.compute_logprobs(ModelInput.from_ints(tokens))))
    greedy = SamplingParams(max_tokens=GEN_TOKENS, temperature=0.0, seed=0)
    gens = []
    for row in rows[:GENERATIONS]:
        prompt = tokenizer.render_chat(row["messages"][:-1], add_generation_prompt=True)
        gens.append((row, client.sample(ModelInput.from_ints(prompt.tokens), 1, greedy)))

    per_prompt, total_nll, total_w = [], 0.0, 0.0
    for (_tokens, weights, fut), row in zip(scored, rows, strict=True):
        lps = fut.result()
        # logprob i is of token i given tokens < i; weight i marks token i as answer text
        nll = -sum(w * lp for w, lp in zip(weights[1:], lps[1:], strict=True) if w)
        w = sum(weights[1:])
        per_prompt.append(
            {
                "prompt": row["messages"][-2]["content"][:80],
                "transformation": row.get("provenance", {}).get("transformation"),
                "answer_tokens": int(w),
                "loss": nll / w,
            }
        )
        total_nll += nll
        total_w += w
    generations = [
        {
            "prompt": row["messages"][-2]["content"],
            "reference": row["messages"][-1]["content"],
            "greedy": tokenizer.decode(fut.result().sequences[0].tokens),
        }
        for row, fut in gens
    ]
    return {
        "loss": total_nll / total_w,  # token-weighted mean over the suite
        "mean_prompt_loss": sum(p["loss"] for p in per_prompt) / len(per_prompt),
        "answer_tokens": int(total_w),
        "prompts": per_prompt,
        "generations": generations,
    }


@dataclass
class SuiteEval:
    """A workflow stage: score the suite on a snapshot of the training weights as of now."""

    suite: str
    label: str
    max_length: int
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"suite_{self.label}"

    def __call__(self, ctx: Context) -> dict[str, Any]:
        training = ctx.ports.require("training")
        client = training.save_weights_and_get_sampling_client(self.label)
        try:
            result = score_suite(
                client, ctx.ports.require("tokenizer"), read_jsonl(self.suite), self.max_length
            )
        finally:
            getattr(client, "close", lambda: None)()
        ctx.metrics.log({f"suite_loss/{self.label}": result["loss"]}, step=ctx.state["step"])
        return {self.name: result}


def qlora_recipe(suite: Path, max_length: int) -> Recipe:
    def build(cfg: Any) -> Any:
        return supervised_workflow(
            cfg,
            name="domain_qlora_sft",
            before_training=[stage(SuiteEval(str(suite), "base", max_length))],
            finish=[stage(SuiteEval(str(suite), "adapter", max_length))],
        )

    return Recipe(
        name="domain_qlora_sft",
        description="QLoRA SFT on the packaged tinyroute dataset, prompt suite before/after.",
        config_model=SupervisedConfig,
        build=build,
        adapters=("hf",),
    )


# -- driver -------------------------------------------------------------------------------------


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def run_model(
    work: Path,
    dataset: Path,
    *,
    model: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, evaluate and export; returns the report (also in ``work/eval/report.json``).

    The run directory is keyed by the dataset's manifest hash and the config: the same
    dataset and settings reuse a completed run, and continue an interrupted one from its
    last checkpoint (``run_recipe(resume=...)``).
    """
    from kitchen.adapters.hf.export import export_run

    model = dict(model or TINY_QLORA)
    config = {**SFT_CONFIG, **(overrides or {})}
    manifest = read_json(dataset / "manifest.json")
    key = _key(manifest, model, config)
    run_dir = work / "model" / f"run-{key}"
    # Just enough epochs for max_steps: the supervised workflow runs every configured epoch
    # (and its epoch-end eval) even after max_steps has stopped the batches.
    n_train = len(read_jsonl(dataset / "train.jsonl"))
    per_epoch = math.ceil(n_train / int(config["batch_size"]))
    config.setdefault("epochs", math.ceil(int(config["max_steps"]) / per_epoch))
    config.update(
        dataset=str(dataset / "train.jsonl"),
        eval_dataset=str(dataset / "valid.jsonl"),
        model=model,
    )
    if model.get("config") is not None:
        vocab = int(model["config"].get("vocab_size", 512))
        config["tokenizer"] = train_tokenizer(dataset, run_dir / "tokenizer", vocab)
    recipe = qlora_recipe(dataset / "test.jsonl", int(config["max_length"]))

    t0 = time.perf_counter()
    status = (
        read_json(run_dir / "manifest.json").get("status")
        if (run_dir / "manifest.json").is_file()
        else None
    )
    if status == "completed":
        state = read_json(run_dir / "manifest.json")["final_state"]
        trained = "reused"
    else:
        kwargs: dict[str, Any] = {"cache_dir": work / "cache"}
        if status is not None:
            kwargs["resume"] = run_dir
            trained = "resumed"
        else:
            kwargs.update(config=config, run_dir=run_dir)
            trained = "trained"
        state = dict(run_recipe(recipe, adapters="hf", **kwargs).context.state)
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    export = export_run(run_dir, work / "export", merged=True)
    merged = score_merged(Path(export["merged"]), dataset / "test.jsonl", config["max_length"])
    export_s = time.perf_counter() - t0

    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    val = [m["val_loss"] for m in metrics if "val_loss" in m]
    base, adapter = state["suite_base"], state["suite_adapter"]
    report = {
        "run_dir": str(run_dir),
        "dataset": str(dataset),
        "suite": str(dataset / "test.jsonl"),
        "model": model,
        "sft": {k: config[k] for k in (*SFT_CONFIG, "epochs")}
        | {
            "steps": state.get("step"),
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": losses[-1] if losses else None,
            "val_loss_last": val[-1] if val else None,
            "seconds": round(train_s, 2),
            "how": trained,
        },
        "metric": "mean per-token NLL of the reference answers (nats), lower is better",
        "base": base,
        "adapter": adapter,
        "merged": merged,
        "delta_adapter_vs_base": adapter["loss"] - base["loss"],
        "export": {
            "adapter": export["adapter"],
            "merged": export["merged"],
            "seconds": round(export_s, 2),
        },
    }
    atomic_write_json(work / "eval" / "report.json", report)
    return report


def score_merged(merged: Path, suite: Path, max_length: int) -> dict[str, Any]:
    """Score the suite on the merged export loaded with plain transformers (no kitchen
    loader, no peft): the adapter folded into the unquantised base."""
    from transformers import AutoModelForCausalLM

    from kitchen.adapters.hf.sampling import HfSamplingClient
    from kitchen.adapters.hf.tokenizer import HfTokenizer

    tok = HfTokenizer.load(merged)
    client = HfSamplingClient(AutoModelForCausalLM.from_pretrained(str(merged)), tokenizer=tok)
    try:
        return score_suite(client, tok, read_jsonl(suite), max_length)
    finally:
        client.close()


def summary(report: dict[str, Any]) -> str:
    sft, b, a, m = report["sft"], report["base"], report["adapter"], report["merged"]
    lines = [
        f"qlora sft: {sft['how']} {sft['steps']} steps in {sft['seconds']:.1f}s; "
        f"train loss {sft['train_loss_first']:.3f} -> {sft['train_loss_last']:.3f}, "
        f"val loss {sft['val_loss_last']:.3f}  ({report['run_dir']})",
        f"prompt suite ({len(b['prompts'])} held-out prompts, {b['answer_tokens']} answer "
        f"tokens, loss/token): base {b['loss']:.3f}  adapter {a['loss']:.3f}  "
        f"merged {m['loss']:.3f}",
    ]
    for g_base, g_ad in zip(b["generations"], a["generations"], strict=True):
        lines.append(f"  Q: {g_base['prompt'][:70]!r}")
        lines.append(f"     base:    {g_base['greedy'][:70]!r}")
        lines.append(f"     adapter: {g_ad['greedy'][:70]!r}")
    lines.append(
        f"export: {report['export']['adapter']} (safetensors LoRA), "
        f"{report['export']['merged']} (merged)"
    )
    return "\n".join(lines)

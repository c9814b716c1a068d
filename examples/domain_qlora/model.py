"""The model half of cookbook example 1: QLoRA SFT → prompt-suite eval (base vs adapter) → export.

    train:  tokenizer (BPE on the dataset's train text) →
            run_recipe(supervised_workflow(
                before_training=[suite scored + answered on the base weights],
                finish=[the same on the trained adapter]), adapters="hf", model.mode=qlora)
    eval:   the quality gate's checks (non-empty, length, printable, py_compile on code
            prompts) on every generation → eval/metrics.json, eval/sample_outputs/
    export: export_run(merged=True, gguf=[f16, q8_0]): adapter safetensors, merged
            transformers model, GGUF files read back tensor by tensor
            → suite scored on the merged model (plain transformers load) → eval/report.json

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

from examples.domain_qlora.config import PipelineConfig

from kitchen import Context, Recipe, run_recipe
from kitchen.dsl import stage
from kitchen.io import atomic_write_json, read_json, read_jsonl
from kitchen.ports.types import ModelInput, SamplingParams
from kitchen.workflows.supervised import SupervisedConfig, supervised_workflow

#: SFT settings not in ``pipeline.yaml`` (fixed by this example's design).
SFT_FIXED: dict[str, Any] = {"eval_every": 0}


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
    client: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    max_length: int,
    gen_tokens: int = 40,
) -> dict[str, Any]:
    """Mean per-token loss of each reference answer under ``client`` (a SamplingClient),
    and a greedy answer (``gen_tokens`` at most) to every prompt.

    Every ``compute_logprobs`` / ``sample`` call is submitted before any is awaited."""
    scored = []
    for row in rows:
        r = tokenizer.render_chat(row["messages"], train_on="last_assistant")
        tokens, weights = list(r.tokens)[:max_length], list(r.weights)[:max_length]
        scored.append((tokens, weights, client.compute_logprobs(ModelInput.from_ints(tokens))))
    greedy = SamplingParams(max_tokens=gen_tokens, temperature=0.0, seed=0)
    gens = []
    for row in rows:
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
            "id": row.get("id"),
            "lang": row.get("lang"),
            "transformation": row.get("provenance", {}).get("transformation"),
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
    gen_tokens: int = 40
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"suite_{self.label}"

    def __call__(self, ctx: Context) -> dict[str, Any]:
        training = ctx.ports.require("training")
        client = training.save_weights_and_get_sampling_client(self.label)
        try:
            result = score_suite(
                client,
                ctx.ports.require("tokenizer"),
                read_jsonl(self.suite),
                self.max_length,
                self.gen_tokens,
            )
        finally:
            getattr(client, "close", lambda: None)()
        ctx.metrics.log({f"suite_loss/{self.label}": result["loss"]}, step=ctx.state["step"])
        return {self.name: result}


def qlora_recipe(suite: Path, max_length: int, gen_tokens: int = 40) -> Recipe:
    def build(cfg: Any) -> Any:
        return supervised_workflow(
            cfg,
            name="domain_qlora_sft",
            before_training=[stage(SuiteEval(str(suite), "base", max_length, gen_tokens))],
            finish=[stage(SuiteEval(str(suite), "adapter", max_length, gen_tokens))],
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


def sft_config(cfg: PipelineConfig, dataset: Path) -> dict[str, Any]:
    """The supervised recipe's config from ``pipeline.yaml`` (model + sft + seed)."""
    config: dict[str, Any] = {**cfg.model.sft.model_dump(), **SFT_FIXED, "seed": cfg.seed}
    # Just enough epochs for max_steps: the supervised workflow runs every configured epoch
    # (and its epoch-end eval) even after max_steps has stopped the batches.
    n_train = len(read_jsonl(dataset / "train.jsonl"))
    per_epoch = math.ceil(n_train / int(config["batch_size"]))
    config["epochs"] = math.ceil(int(config["max_steps"]) / per_epoch)
    config.update(
        dataset=str(dataset / "train.jsonl"),
        eval_dataset=str(dataset / "valid.jsonl"),
        model=cfg.model_spec(),
    )
    return config


def train(cfg: PipelineConfig, work: Path, dataset: Path) -> dict[str, Any]:
    """The ``train`` stage: QLoRA SFT with the suite scored before and after.

    The run directory is keyed by the dataset's manifest hash and the config: the same
    dataset and settings reuse a completed run, and continue an interrupted one from its
    last checkpoint (``run_recipe(resume=...)``).
    """
    config = sft_config(cfg, dataset)
    manifest = read_json(dataset / "manifest.json")
    key = _key(manifest, config["model"], {k: v for k, v in config.items() if k != "model"})
    run_dir = work / "model" / f"run-{key}"
    if cfg.model.config is not None:
        vocab = int(cfg.model.config.get("vocab_size", 512))
        # beside the run directory: kitchen refuses a non-empty run dir it did not create
        config["tokenizer"] = train_tokenizer(dataset, work / "model" / f"tokenizer-{key}", vocab)
    recipe = qlora_recipe(dataset / "test.jsonl", int(config["max_length"]), cfg.eval.gen_tokens)

    t0 = time.perf_counter()
    status = (
        read_json(run_dir / "manifest.json").get("status")
        if (run_dir / "manifest.json").is_file()
        else None
    )
    if status == "completed":
        how = "reused"
    else:
        kwargs: dict[str, Any] = {"cache_dir": work / "cache"}
        if status is not None:
            kwargs["resume"] = run_dir
            how = "resumed"
        else:
            kwargs.update(config=config, run_dir=run_dir)
            how = "trained"
        run_recipe(recipe, adapters="hf", **kwargs)
    state = read_json(run_dir / "manifest.json")["final_state"]
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    losses = [m["loss"] for m in metrics if "loss" in m]
    val = [m["val_loss"] for m in metrics if "val_loss" in m]
    return {
        "run_dir": str(run_dir),
        "dataset": str(dataset),
        "how": how,
        "seconds": round(time.perf_counter() - t0, 2),
        "steps": state.get("step"),
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "val_loss_last": val[-1] if val else None,
        "config": {k: v for k, v in config.items() if k not in ("dataset", "eval_dataset")},
    }


def train_summary(t: dict[str, Any]) -> str:
    first, last, val = t["train_loss_first"], t["train_loss_last"], t["val_loss_last"]
    return (
        f"qlora sft: {t['how']} {t['steps']} steps in {t['seconds']:.1f}s; "
        f"train loss {first:.3f} -> {last:.3f}, val loss {val:.3f}  ({t['run_dir']})"
    )


def _check(checks: Sequence[Any], prompt: str, text: str, lang: str | None) -> dict[str, Any]:
    """The quality gate's checks on one generation: ``{check: ok | [reasons] | None}``."""
    from kitchen.data.stages.gate import _applies

    sample = {"instruction": prompt, "response": text, "lang": lang}
    out: dict[str, Any] = {}
    for c in checks:
        out[c.name] = (c(sample) or True) if _applies(c, sample) else None
    return out


def _rates(per_prompt: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[int]] = {}
    for p in per_prompt:
        for name, r in p.items():
            if r is not None:
                ok = by.setdefault(name, [0, 0])
                ok[0] += r is True
                ok[1] += 1
    passed_all = sum(all(r is True or r is None for r in p.values()) for p in per_prompt)
    return {
        "all_checks_passed": passed_all,
        "prompts": len(per_prompt),
        "by_check": {k: {"passed": v[0], "checked": v[1]} for k, v in sorted(by.items())},
    }


def evaluate(cfg: PipelineConfig, work: Path, run_dir: Path) -> dict[str, Any]:
    """The ``eval`` stage: the suite results of the run (base vs adapter), the gate's
    checks run on every generation, ``eval/metrics.json`` and ``eval/sample_outputs/``."""
    from examples.domain_qlora.pipeline import checks as gate_checks

    state = read_json(run_dir / "manifest.json")["final_state"]
    base, adapter = state["suite_base"], state["suite_adapter"]
    checks = gate_checks(cfg)
    out = work / "eval" / "sample_outputs"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    results: dict[str, list[dict[str, Any]]] = {"base": [], "adapter": [], "reference": []}
    for i, (gb, ga, pb, pa) in enumerate(
        zip(base["generations"], adapter["generations"], base["prompts"], adapter["prompts"],
            strict=True)
    ):  # fmt: skip
        sample: dict[str, Any] = {
            k: gb[k] for k in ("id", "transformation", "lang", "prompt", "reference")
        }
        for label, text, loss in (
            ("base", gb["greedy"], pb["loss"]),
            ("adapter", ga["greedy"], pa["loss"]),
            ("reference", gb["reference"], None),
        ):
            checked = _check(checks, gb["prompt"], text, gb.get("lang"))
            results[label].append(checked)
            if label != "reference":
                sample[label] = {"text": text, "answer_loss": loss, "checks": checked}
            else:
                sample["reference_checks"] = checked
        atomic_write_json(out / f"{i:02d}-{gb.get('id') or i}.json", sample)
    metrics = {
        "run_dir": str(run_dir),
        "suite": "dataset test split (held out)",
        "prompts": len(base["prompts"]),
        "answer_tokens": base["answer_tokens"],
        "loss_metric": "mean per-token NLL of the reference answers (nats), lower is better",
        "loss": {
            "base": base["loss"],
            "adapter": adapter["loss"],
            "delta": adapter["loss"] - base["loss"],
        },
        "prompts_adapter_better": sum(
            a["loss"] < b["loss"] for a, b in zip(adapter["prompts"], base["prompts"], strict=True)
        ),
        "gen_tokens": cfg.eval.gen_tokens,
        "checks": {label: _rates(r) for label, r in results.items()},
        "sample_outputs": str(out),
    }
    atomic_write_json(work / "eval" / "metrics.json", metrics)
    return metrics


def eval_summary(m: dict[str, Any]) -> str:
    loss = m["loss"]
    lines = [
        f"prompt suite ({m['prompts']} held-out prompts, {m['answer_tokens']} answer tokens, "
        f"loss/token): base {loss['base']:.3f}  adapter {loss['adapter']:.3f}  "
        f"(adapter better on {m['prompts_adapter_better']}/{m['prompts']})",
    ]
    for label in ("base", "adapter", "reference"):
        c = m["checks"][label]
        by = ", ".join(f"{k} {v['passed']}/{v['checked']}" for k, v in c["by_check"].items())
        lines.append(
            f"  checks on {label} answers: all passed {c['all_checks_passed']}/{c['prompts']}"
            f" ({by})"
        )
    lines.append(f"  eval/metrics.json, {m['sample_outputs']}/")
    return "\n".join(lines)


def export(cfg: PipelineConfig, work: Path, run_dir: Path) -> dict[str, Any]:
    """The ``export`` stage: adapter + merged model + GGUF files, the suite on the merged
    model, and the whole report in ``eval/report.json``."""
    from kitchen.adapters.hf.export import export_run

    t0 = time.perf_counter()
    written = export_run(
        run_dir, work / "export", merged=cfg.export.merged, gguf=tuple(cfg.export.gguf)
    )
    state = read_json(run_dir / "manifest.json")["final_state"]
    config = read_json(run_dir / "config.json")
    merged = (
        score_merged(
            Path(written["merged"]),
            Path(config["dataset"]).parent / "test.jsonl",
            int(config["max_length"]),
            cfg.eval.gen_tokens,
        )
        if "merged" in written
        else None
    )
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    losses = [m["loss"] for m in metrics if "loss" in m]
    val = [m["val_loss"] for m in metrics if "val_loss" in m]
    base, adapter = state["suite_base"], state["suite_adapter"]
    train_info = read_json(work / "state.json")["stages"].get("train", {})
    report = {
        "run_dir": str(run_dir),
        "dataset": str(Path(config["dataset"]).parent),
        "model": config["model"],
        "sft": {k: config.get(k) for k in (*cfg.model.sft.model_dump(), "epochs", "seed")}
        | {
            "steps": state.get("step"),
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": losses[-1] if losses else None,
            "val_loss_last": val[-1] if val else None,
            "seconds": train_info.get("seconds"),
            "how": train_info.get("how"),
        },
        "metric": "mean per-token NLL of the reference answers (nats), lower is better",
        "base": base,
        "adapter": adapter,
        "merged": merged,
        "delta_adapter_vs_base": adapter["loss"] - base["loss"],
        "eval": read_json(work / "eval" / "metrics.json"),
        "export": {
            "adapter": written.get("adapter"),
            "merged": written.get("merged"),
            "gguf": written.get("gguf", {}),
            "seconds": round(time.perf_counter() - t0, 2),
        },
    }
    atomic_write_json(work / "eval" / "report.json", report)
    return report


def export_summary(report: dict[str, Any]) -> str:
    e = report["export"]
    lines = [f"export: {e['adapter']} (safetensors LoRA), {e['merged']} (merged)"]
    if report["merged"] is not None:
        lines.append(
            f"  merged model (plain transformers): suite loss/token {report['merged']['loss']:.3f}"
            f" (adapter {report['adapter']['loss']:.3f})"
        )
    for t, g in e["gguf"].items():
        lines.append(
            f"  gguf {t}: {g['path']} ({g['bytes'] / 1024:.0f} KiB), read back: every tensor "
            f"within {g['rel_max_err']:.1e} (relative max error) of the merged model"
        )
    return "\n".join(lines)


def score_merged(
    merged: Path, suite: Path, max_length: int, gen_tokens: int = 40
) -> dict[str, Any]:
    """Score the suite on the merged export loaded with plain transformers (no kitchen
    loader, no peft): the adapter folded into the unquantised base."""
    from transformers import AutoModelForCausalLM

    from kitchen.adapters.hf.device import resolve_device
    from kitchen.adapters.hf.sampling import HfSamplingClient
    from kitchen.adapters.hf.tokenizer import HfTokenizer

    tok = HfTokenizer.load(merged)
    model = AutoModelForCausalLM.from_pretrained(str(merged)).to(resolve_device("auto"))
    client = HfSamplingClient(model, tokenizer=tok)
    try:
        return score_suite(client, tok, read_jsonl(suite), max_length, gen_tokens)
    finally:
        client.close()

"""The tiny_lm workflow: kitchen's supervised workflow with setup and finish stages.

    prepare_corpus → train_tokenizer →                      (setup, replayed on resume)
    [load_dataset → init_session → announce → baseline_eval →
     epoch loop [batches, checkpoints, val_loss] → save_final]   (kitchen.workflows.supervised)
    → validate → write_training_metrics                      (finish)

Everything that varies per invocation (output directory, ``--skip-*``, ``--resume``) lives
in :class:`Options`, held by the stage objects; hyper-parameters live in the validated
config, which the run directory stores, so ``--resume`` continues with the same ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from kitchen import Context, Recipe
from kitchen.dsl import stage
from kitchen.io import atomic_write_json, atomic_write_text, read_jsonl, rewrite_jsonl
from kitchen.ports.types import ModelInput, SamplingParams
from kitchen.workflows.quickstart import QuickstartConfig
from kitchen.workflows.quickstart.stages import baseline_eval, chunk_text
from kitchen.workflows.supervised import supervised_workflow

# --------------------------------------------------------------------------------------
# failures: one class per exit code (the CLI maps them; see cli.EXIT_CODES)


class TinyLMError(Exception):
    """A failure with an actionable message; ``kind`` picks the exit code."""

    kind = "training"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class PrerequisiteError(TinyLMError):
    kind = "prerequisites"


class DiskSpaceError(TinyLMError):
    kind = "disk"


class CorpusError(TinyLMError):
    kind = "corpus"


class TokenizerError(TinyLMError):
    kind = "tokenizer"


class TrainingFailed(TinyLMError):
    kind = "training"


class ValidationFailed(TinyLMError):
    kind = "validation"


class ResumeError(TinyLMError):
    kind = "resume"


# --------------------------------------------------------------------------------------
# config


class TinyLMConfig(QuickstartConfig):
    """The quickstart's from-scratch config plus what tiny_lm adds."""

    corpus_chars: int | None = Field(
        None, ge=1000, description="use only the first N characters of train.txt (and N/8 of valid)"
    )
    sample_prompts: list[str] = Field(
        default_factory=lambda: ["The cook", "Salt", "In the kitchen", "The soup", "She"],
        description="validation prompts; each is generated `samples_per_prompt` times",
    )
    samples_per_prompt: int = Field(2, ge=1)
    max_val_loss: float | None = Field(
        None, gt=0, description="fail validation (exit 8) if the final val_loss is above this"
    )


# --------------------------------------------------------------------------------------
# per-invocation options and the phase clock


class PhaseClock:
    """Prints numbered phase headers and records each phase's wall time."""

    PHASES = ("prerequisites", "corpus", "tokenizer", "training", "validation")

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.times: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def start(self, name: str, detail: str = "") -> None:
        self.stop()
        n = self.PHASES.index(name) + 1 if name in self.PHASES else 0
        head = f"[{n}/{len(self.PHASES)}] {name}" if n else name
        print(f"\n==> {head}" + (f": {detail}" if detail else ""), file=self.out, flush=True)
        self._current = (name, time.perf_counter())

    def stop(self) -> None:
        if self._current is not None:
            name, t0 = self._current
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
            self._current = None

    def say(self, text: str) -> None:
        print(f"    {text}", file=self.out, flush=True)


@dataclass
class Options:
    output_dir: Path
    skip_corpus: bool = False
    skip_tokenizer: bool = False
    resume: bool = False
    preset: str | None = None
    clock: PhaseClock = field(default_factory=PhaseClock)

    @property
    def corpus_dir(self) -> Path:
        return self.output_dir / "corpus"

    @property
    def tokenizer_dir(self) -> Path:
        return self.output_dir / "tokenizer"

    @property
    def run_dir(self) -> Path:
        return self.output_dir / "run"

    @property
    def metrics_file(self) -> Path:
        return self.output_dir / "training_metrics.json"


def _cfg(ctx: Context) -> TinyLMConfig:
    cfg = ctx.config
    return cfg if isinstance(cfg, TinyLMConfig) else TinyLMConfig.model_validate(cfg or {})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------
# setup stages


class PrepareCorpus:
    """Chunk train.txt/valid.txt into JSONL text rows under OUTPUT/corpus (replayed)."""

    name = "prepare_corpus"
    outputs = ("train_source", "eval_source")

    def __init__(self, opts: Options) -> None:
        self.opts = opts

    def _source_dir(self, cfg: TinyLMConfig) -> Path:
        if cfg.corpus == "bilingual":  # bundled English + generated Spanish
            from examples.tiny_lm.bilingual import write_bilingual

            src = self.opts.corpus_dir / "source"
            write_bilingual(src)
            return src
        if cfg.corpus == "bundled":
            from kitchen.data import corpus_path

            return corpus_path("train.txt").parent
        root = Path(cfg.corpus)
        if not (root / "train.txt").is_file():
            raise CorpusError(
                f"corpus directory {root} has no train.txt",
                "point --corpus at a directory with train.txt (and valid.txt), "
                "or leave it at 'bundled'",
            )
        return root

    def __call__(self, ctx: Context) -> dict[str, Any]:
        cfg, opts = _cfg(ctx), self.opts
        out = opts.corpus_dir
        train, valid, stats_file = out / "train.jsonl", out / "valid.jsonl", out / "corpus.json"
        reuse = opts.skip_corpus or (opts.resume and stats_file.is_file())
        if not opts.resume:
            opts.clock.start("corpus", "reusing" if reuse else "preparing")
        if reuse:
            if not (train.is_file() and stats_file.is_file()):
                raise CorpusError(
                    f"--skip-corpus: no prepared corpus in {out}",
                    "run once without --skip-corpus to prepare it",
                )
            stats = json.loads(stats_file.read_text("utf-8"))
        else:
            src = self._source_dir(cfg)
            text = (src / "train.txt").read_text("utf-8")
            vtext = (src / "valid.txt").read_text("utf-8") if (src / "valid.txt").is_file() else ""
            if cfg.corpus_chars:
                text, vtext = text[: cfg.corpus_chars], vtext[: max(500, cfg.corpus_chars // 8)]
            train_rows = [{"text": c} for c in chunk_text(text, cfg.chunk_chars)]
            valid_rows = [{"text": c} for c in chunk_text(vtext, cfg.chunk_chars)]
            if len(train_rows) < 2:
                raise CorpusError(
                    f"the corpus in {src} gives {len(train_rows)} training rows",
                    "use a larger corpus or a smaller chunk_chars",
                )
            if not valid_rows:  # hold out every 10th row when there is no valid.txt
                valid_rows, train_rows = (
                    train_rows[::10],
                    [r for i, r in enumerate(train_rows) if i % 10],
                )
            store = ctx.ports.require("dataset")
            store.save(train_rows, str(train))
            store.save(valid_rows, str(valid))
            languages: dict[str, int] = {}
            for lang_file in sorted(src.glob("valid_*.txt")):  # per-language validation
                lang = lang_file.stem.removeprefix("valid_")
                rows = [
                    {"text": c} for c in chunk_text(lang_file.read_text("utf-8"), cfg.chunk_chars)
                ]
                rewrite_jsonl(out / f"valid_{lang}.jsonl", rows)
                languages[lang] = len(rows)
            stats = {
                "source": str(src),
                "train_rows": len(train_rows),
                "valid_rows": len(valid_rows),
                "train_chars": sum(len(r["text"]) for r in train_rows),
                "valid_chars": sum(len(r["text"]) for r in valid_rows),
                "chunk_chars": cfg.chunk_chars,
                "train_sha256": _sha256(train),
                "valid_sha256": _sha256(valid),
                **({"valid_rows_by_language": languages} if languages else {}),
            }
            atomic_write_json(stats_file, stats)
        if not opts.resume:
            opts.clock.say(
                f"{stats['train_rows']} train rows ({stats['train_chars']:,} chars), "
                f"{stats['valid_rows']} valid rows -> {out}"
            )
        ctx.vars["corpus_lines"] = [r["text"] for r in read_jsonl(train)]
        ctx.vars["corpus_stats"] = stats
        return {"train_source": str(train), "eval_source": str(valid)}


class TrainTokenizer:
    """Train a BPE tokenizer of ``vocab_size`` on the corpus, or reload it (replayed)."""

    name = "train_tokenizer"

    def __init__(self, opts: Options) -> None:
        self.opts = opts

    def __call__(self, ctx: Context) -> dict[str, Any]:
        cfg, opts = _cfg(ctx), self.opts
        trainer = ctx.ports.extra.get("tokenizer_trainer")
        if trainer is None:  # adapters with a fixed tokenizer (noop) need none
            return {}
        directory = opts.tokenizer_dir
        exists = (directory / "tokenizer.json").is_file()
        reuse = opts.skip_tokenizer or (opts.resume and exists)
        if not opts.resume:
            opts.clock.start("tokenizer", f"{'reusing' if reuse else 'training'} BPE")
        if reuse and not exists:
            raise TokenizerError(
                f"--skip-tokenizer: no tokenizer in {directory}",
                "run once without --skip-tokenizer to train it",
            )
        if not reuse and directory.exists():
            shutil.rmtree(directory)  # a fresh run retrains (the vocab size may differ)
        try:
            # loads the saved tokenizer when there is one, trains and saves one otherwise
            tok = trainer(ctx.vars["corpus_lines"], cfg.vocab_size, str(directory))
        except Exception as exc:
            raise TokenizerError(
                f"tokenizer training/loading failed: {exc}",
                "check --vocab-size (>= 300) and the corpus; delete the tokenizer directory "
                "and run without --skip-tokenizer to retrain",
            ) from exc
        model_vocab = int((cfg.model.get("config") or {}).get("vocab_size", cfg.vocab_size))
        if tok.vocab_size > model_vocab:
            raise TokenizerError(
                f"the tokenizer in {directory} has {tok.vocab_size} tokens but the model only "
                f"{model_vocab}",
                "run without --skip-tokenizer to retrain it at --vocab-size, or pass "
                f"--vocab-size {tok.vocab_size}",
            )
        ctx.ports.tokenizer = tok
        lines = ctx.vars["corpus_lines"]
        sample = " ".join(lines[:200])
        ratio = len(sample) / max(1, len(tok.encode(sample)))
        if not opts.resume:
            opts.clock.say(f"vocab {tok.vocab_size}, {ratio:.2f} chars/token -> {directory}")
        return {"tokenizer_vocab": tok.vocab_size, "chars_per_token": round(ratio, 3)}


class Announce:
    """Print the training header (replayed, so a resumed run prints it too)."""

    name = "announce_training"

    def __init__(self, opts: Options) -> None:
        self.opts = opts

    def __call__(self, ctx: Context) -> None:
        cfg = _cfg(ctx)
        info = ctx.vars.get("model_info")
        n_params = getattr(info, "total_params", None)
        ctx.vars["num_params"] = n_params
        steps = math.ceil(len(ctx.vars["train"]) / cfg.batch_size)
        detail = f"{cfg.epochs} epochs x {steps} steps, batch {cfg.batch_size}"
        if self.opts.resume:
            detail += " (resuming)"
        self.opts.clock.start("training", detail)
        if n_params is not None:
            self.opts.clock.say(
                f"model: {n_params / 1e6:.2f}M parameters "
                f"({cfg.model.get('mode', 'full')}, from config), lr {cfg.learning_rate:g}"
            )


# --------------------------------------------------------------------------------------
# finish stages


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    k = max(0, math.ceil(0.95 * len(ordered)) - 1)
    return ordered[k]


class LanguageLoss:
    """Validation loss per language (``OUTPUT/corpus/valid_<lang>.jsonl``, the bilingual
    corpus): token-weighted mean NLL of each row under the final weights."""

    name = "language_loss"
    outputs = ("val_loss_by_language",)

    def __init__(self, opts: Options) -> None:
        self.opts = opts

    def __call__(self, ctx: Context) -> dict[str, Any]:
        files = sorted(self.opts.corpus_dir.glob("valid_*.jsonl"))
        if not files:
            return {"val_loss_by_language": None}
        tok = ctx.ports.require("tokenizer")
        sampler = ctx.ports.require("training").save_weights_and_get_sampling_client("lang")
        cfg = _cfg(ctx)
        out: dict[str, float] = {}
        for f in files:
            jobs = []
            for row in read_jsonl(f):
                ids = tok.encode(row["text"])[: cfg.max_length - 1]
                if tok.bos_token_id is not None:
                    ids = [tok.bos_token_id, *ids]
                jobs.append(sampler.compute_logprobs(ModelInput.from_ints(ids)))
            nll = n = 0.0
            for fut in jobs:
                lps = [lp for lp in fut.result()[1:] if lp is not None]
                nll -= sum(lps)
                n += len(lps)
            out[f.stem.removeprefix("valid_")] = round(nll / max(1.0, n), 5)
        self.opts.clock.say(
            "val_loss by language: " + ", ".join(f"{k} {v:.3f}" for k, v in out.items())
        )
        return {"val_loss_by_language": out}


#: The inference budget of the pipeline spec: peak RSS and p95 generation latency.
RSS_BUDGET_MB = 400
P95_BUDGET_MS = 250


def _sample_in_process(
    ctx: Context, cfg: TinyLMConfig, tok: Any
) -> tuple[list[float], list[dict[str, Any]], int]:
    """Samples from the training port's sampler (adapters whose weights are not a
    transformers model, e.g. noop)."""
    sampler = ctx.ports.require("training").save_weights_and_get_sampling_client("validate")
    latencies: list[float] = []
    samples: list[dict[str, Any]] = []
    generated = 0
    for p_i, prompt in enumerate(cfg.sample_prompts):
        ids = tok.encode(prompt)
        if tok.bos_token_id is not None:
            ids = [tok.bos_token_id, *ids]
        for k in range(cfg.samples_per_prompt):
            params = SamplingParams(
                max_tokens=cfg.sample_tokens,
                temperature=0.8,
                top_k=50,
                seed=cfg.seed + 97 * p_i + k,
            )
            t0 = time.perf_counter()
            seq = sampler.sample(ModelInput.from_ints(ids), 1, params).result()
            latencies.append(time.perf_counter() - t0)
            tokens = list(seq.sequences[0].tokens)
            generated += len(tokens)
            samples.append({"prompt": prompt, "text": prompt + tok.decode(tokens)})
    return latencies, samples, generated


def _infer_in_subprocess(
    weights: Path, tokenizer: Path, cfg: TinyLMConfig, tok: Any
) -> dict[str, Any]:
    """Run ``examples.tiny_lm.infer`` on the saved weights in a fresh interpreter."""
    import subprocess
    import tempfile

    request = {
        "prompts": list(cfg.sample_prompts),
        "max_tokens": cfg.sample_tokens,
        "samples_per_prompt": cfg.samples_per_prompt,
        "seed": cfg.seed,
        "bos_token_id": tok.bos_token_id,
        "pad_token_id": tok.eos_token_id,
    }
    with tempfile.TemporaryDirectory(prefix="tiny-lm-infer-") as tmp:
        req = Path(tmp) / "request.json"
        req.write_text(json.dumps(request))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "examples.tiny_lm.infer",
                str(weights),
                str(tokenizer),
                "--request",
                str(req),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"inference process failed ({out.returncode}): {last}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


class Validate:
    """Generate samples in a fresh inference process; measure per-generation latency
    (p50/p95) and that process's peak RSS against the budget."""

    name = "validate"
    outputs = ("validation",)

    def __init__(self, opts: Options) -> None:
        self.opts = opts

    def __call__(self, ctx: Context) -> dict[str, Any]:
        cfg, clock = _cfg(ctx), self.opts.clock
        clock.start("validation", "samples, latency, memory")
        val = ctx.state.get("val_loss")
        if val is None or not math.isfinite(float(val)):
            raise TrainingFailed(
                f"training ended without a finite validation loss ({val})",
                "lower --learning-rate, or try --preset low-memory / a smaller model",
            )
        tok = ctx.ports.require("tokenizer")
        training = ctx.ports.require("training")
        try:
            weights = Path(training.save_weights_for_sampler("validate").result().path)
            if (weights / "config.json").is_file():  # a transformers model: serve it apart
                raw = _infer_in_subprocess(weights, self.opts.tokenizer_dir, cfg, tok)
                latencies, samples = raw["latencies_s"], raw["samples"]
                generated, inference_rss = raw["generated_tokens"], raw["peak_rss_mb"]
            else:
                latencies, samples, generated = _sample_in_process(ctx, cfg, tok)
                inference_rss = None
        except Exception as exc:
            raise ValidationFailed(
                f"sample generation failed: {type(exc).__name__}: {exc}",
                "the weights are saved; re-run validation with --resume or check the model",
            ) from exc
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        peak_mb = peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20
        p95 = 1000 * _p95(latencies)
        rss = inference_rss if inference_rss is not None else peak_mb
        result = {
            "num_generations": len(latencies),
            "max_new_tokens": cfg.sample_tokens,
            "latency_ms_p50": round(1000 * sorted(latencies)[len(latencies) // 2], 2),
            "latency_ms_p95": round(p95, 2),
            "latency_ms_max": round(1000 * max(latencies), 2),
            "tokens_per_s": round(generated / max(1e-9, sum(latencies)), 1),
            # the inference process's peak (the budget's subject); the training process's
            # (optimizer state, batches, dataset) is reported beside it
            "peak_rss_mb": round(rss, 1),
            "training_peak_rss_mb": round(peak_mb, 1),
            "inference_process": inference_rss is not None,
            "budget": {
                "peak_rss_mb": RSS_BUDGET_MB,
                "latency_ms_p95": P95_BUDGET_MS,
                "met": rss <= RSS_BUDGET_MB and p95 <= P95_BUDGET_MS,
            },
            "samples": samples,
        }
        if ctx.run is not None:
            atomic_write_text(
                ctx.run.artifacts_dir / "samples.txt", "\n".join(s["text"] for s in samples) + "\n"
            )
        for s in samples[:: cfg.samples_per_prompt][:6]:
            clock.say(f"sample: {s['text']!r}")
        clock.say(
            f"p95 latency {result['latency_ms_p95']} ms for {cfg.sample_tokens} tokens, "
            f"{result['tokens_per_s']} tok/s, inference peak RSS {result['peak_rss_mb']} MB "
            f"(training process {result['training_peak_rss_mb']} MB); budget "
            f"RSS <= {RSS_BUDGET_MB} MB, p95 <= {P95_BUDGET_MS} ms: "
            + ("met" if result["budget"]["met"] else "NOT met")
        )
        if cfg.max_val_loss is not None and float(val) > cfg.max_val_loss:
            raise ValidationFailed(
                f"final val_loss {float(val):.4f} is above max_val_loss {cfg.max_val_loss}",
                "train longer (--epochs), raise --learning-rate, or use --preset quality",
            )
        clock.stop()
        return {"validation": result}


def epoch_history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch summary from the run's metrics.jsonl (train loss, val loss, lr, time)."""
    by_epoch: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        if "loss" in r and "epoch" in r:
            by_epoch.setdefault(int(r["epoch"]), []).append(r)
    vals = [r for r in records if "val_loss" in r]
    history = []
    # epoch 1 starts after the baseline eval (the step-0 val_loss record) when there is one
    prev_end: float | None = next(
        (float(v["time"]) for v in vals if int(v["step"]) == 0 and "time" in v), None
    )
    for epoch in sorted(by_epoch):
        rows = by_epoch[epoch]
        last_step = max(int(r["step"]) for r in rows)
        val = next((v for v in vals if int(v["step"]) == last_step), None)
        end = float((val or rows[-1]).get("time", 0.0))
        start = prev_end if prev_end is not None else float(rows[0].get("time", end))
        history.append(
            {
                "epoch": epoch + 1,
                "steps": len(rows),
                "last_step": last_step,
                "train_loss": round(sum(float(r["loss"]) for r in rows) / len(rows), 5),
                "train_loss_last": round(float(rows[-1]["loss"]), 5),
                "val_loss": round(float(val["val_loss"]), 5) if val else None,
                "learning_rate": float(rows[-1].get("lr", 0.0)),
                "tokens": int(sum(float(r.get("num_tokens", 0.0)) for r in rows)),
                "seconds": round(end - start, 2),
            }
        )
        prev_end = end
    return history


class WriteMetrics:
    """Write OUTPUT/training_metrics.json: hyper-parameters, per-epoch history, validation."""

    name = "write_training_metrics"

    def __init__(self, opts: Options) -> None:
        self.opts = opts

    def __call__(self, ctx: Context) -> dict[str, Any]:
        cfg, opts = _cfg(ctx), self.opts
        records = ctx.run.metrics() if ctx.run is not None else []
        history = epoch_history(records)
        untrained = next((r["val_loss"] for r in records if r.get("step") == 0), None)
        doc = {
            "kind": "examples.tiny_lm/training_metrics",
            "schema_version": 1,
            "preset": opts.preset,
            "hyperparameters": cfg.model_dump(mode="json"),
            "model": {
                "parameters": ctx.vars.get("num_params"),
                "architecture": (cfg.model.get("config") or {}).get("model_type"),
            },
            "corpus": ctx.vars.get("corpus_stats"),
            "tokenizer": {
                "vocab_size": ctx.state.get("tokenizer_vocab"),
                "chars_per_token": ctx.state.get("chars_per_token"),
                "path": str(opts.tokenizer_dir),
            },
            "history": history,
            "final": {
                "val_loss": ctx.state.get("val_loss"),
                "val_loss_untrained": untrained,
                "train_loss": history[-1]["train_loss"] if history else None,
                "steps": ctx.state.get("step"),
                "epochs": len(history),
            },
            "validation": ctx.state.get("validation"),
            "val_loss_by_language": ctx.state.get("val_loss_by_language"),
            "run_dir": str(ctx.run.root) if ctx.run is not None else None,
            "final_weights": ctx.state.get("final_weights"),
        }
        atomic_write_json(opts.metrics_file, doc)
        return {"training_metrics": str(opts.metrics_file)}


# --------------------------------------------------------------------------------------
# the workflow and the recipe


def tiny_lm_workflow(config: Any, opts: Options) -> Any:
    return supervised_workflow(
        config,
        name="tiny_lm",
        setup=[
            stage(PrepareCorpus(opts), replay=True, outputs=["train_source", "eval_source"]),
            stage(TrainTokenizer(opts), replay=True),
        ],
        before_training=[
            stage(Announce(opts), replay=True),
            stage(baseline_eval, outputs=["val_loss_untrained"]),
        ],
        finish=[
            stage(LanguageLoss(opts), outputs=["val_loss_by_language"]),
            stage(Validate(opts), outputs=["validation"]),
            stage(WriteMetrics(opts), outputs=["training_metrics"]),
        ],
    )


def recipe(opts: Options) -> Recipe:
    """A kitchen Recipe bound to this invocation's options (output dir, skips, resume)."""
    return Recipe(
        name="tiny_lm",
        description="Small LM from scratch: corpus -> BPE -> from-config Llama -> validation.",
        config_model=TinyLMConfig,
        build=lambda cfg: tiny_lm_workflow(cfg, opts),
        adapters=("hf",),
    )

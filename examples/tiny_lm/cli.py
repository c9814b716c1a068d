"""The one command: prerequisites → corpus → tokenizer → training → validation.

Exit codes (each failure kind has its own, with a message saying what to do):

====  ==============================================================================
0     success
2     bad arguments or config (argparse, kitchen ConfigError)
3     prerequisites missing (Python version, packages)
4     not enough free disk space in --output-dir
5     corpus problem (missing train.txt, --skip-corpus without a prepared corpus)
6     tokenizer problem (--skip-tokenizer without a tokenizer, vocab mismatch)
7     training failed (non-finite loss, out of memory, backend error)
8     validation failed (generation error, val_loss above --max-val-loss)
9     resume problem (nothing to resume, run already complete, run exists without --resume)
130   interrupted (Ctrl-C); continue with --resume
====  ==============================================================================
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from examples.tiny_lm import presets
from examples.tiny_lm.workflow import (
    DiskSpaceError,
    Options,
    PhaseClock,
    PrerequisiteError,
    ResumeError,
    TinyLMError,
    TrainingFailed,
    recipe,
)

from kitchen.errors import ConfigError, DataError, StageError, UsageError

EXIT_CODES = {
    "ok": 0,
    "usage": 2,
    "prerequisites": 3,
    "disk": 4,
    "corpus": 5,
    "tokenizer": 6,
    "training": 7,
    "validation": 8,
    "resume": 9,
    "interrupted": 130,
}

REQUIRED_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors")
MIN_PYTHON = (3, 11)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m examples.tiny_lm",
        description="Train a small language model from scratch on CPU with kitchen.",
        epilog="Exit codes: " + ", ".join(f"{v}={k}" for k, v in EXIT_CODES.items()),
    )
    p.add_argument("--preset", choices=sorted(presets.PRESETS), help="quick|quality|low-memory")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--vocab-size", type=int)
    p.add_argument("--seed", type=int, help="seeds the model init, data order and sampling")
    p.add_argument("--corpus", help="directory with train.txt/valid.txt (default: bundled)")
    p.add_argument(
        "--bilingual",
        action="store_true",
        help="train on English + generated Spanish; validation loss and samples per language",
    )
    p.add_argument("--max-val-loss", type=float, help="fail (exit 8) above this val_loss")
    p.add_argument("--skip-corpus", action="store_true", help="reuse OUTPUT/corpus")
    p.add_argument("--skip-tokenizer", action="store_true", help="reuse OUTPUT/tokenizer")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--output-dir", default="out/tiny_lm", type=Path)
    p.add_argument("--min-free-mb", type=int, default=200, help="disk space needed (MB)")
    args = p.parse_args(argv)
    if args.bilingual and args.corpus:
        p.error("--bilingual builds its own corpus; drop --corpus")
    return args


#: Validation prompts of a bilingual run: the same starts in both languages.
BILINGUAL_PROMPTS = [
    "The cook",
    "In the kitchen",
    "The soup",
    "La cocinera",
    "En la cocina",
    "La sopa",
]


def check_prerequisites(opts: Options, min_free_mb: int) -> list[str]:
    """Python version, packages, free disk. Raises with an actionable message."""
    clock = opts.clock
    clock.start("prerequisites", "python, packages, disk")
    if sys.version_info < MIN_PYTHON:
        raise PrerequisiteError(
            f"Python {sys.version.split()[0]} is too old",
            f"use Python >= {'.'.join(map(str, MIN_PYTHON))}",
        )
    missing = [m for m in REQUIRED_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        raise PrerequisiteError(
            f"missing packages: {', '.join(missing)}",
            "pip install -c constraints.txt -e '.[hf]'  (CPU torch is pinned there)",
        )
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    free_mb = shutil.disk_usage(opts.output_dir).free / 2**20
    if free_mb < min_free_mb:
        raise DiskSpaceError(
            f"only {free_mb:.0f} MB free in {opts.output_dir} (need {min_free_mb} MB)",
            "free some space or pass another --output-dir",
        )
    notes = [
        f"python {sys.version.split()[0]}",
        *(f"{m} {_version(m)}" for m in REQUIRED_PACKAGES),
        f"{free_mb / 1024:.1f} GB free",
    ]
    clock.say(", ".join(notes))
    run = opts.run_dir
    if opts.resume:
        if not (run / "config.json").is_file():
            raise ResumeError(
                f"--resume: there is no run in {run}",
                "start it without --resume (same --output-dir)",
            )
    elif (run / "manifest.json").is_file():
        raise ResumeError(
            f"{opts.output_dir} already holds a run",
            "pass --resume to continue it, or choose another --output-dir "
            "(--skip-corpus/--skip-tokenizer reuse OUTPUT/corpus and OUTPUT/tokenizer)",
        )
    return notes


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "?"


class EpochPrinter:
    """A runner progress sink that prints one line per finished epoch."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self._t0: dict[int, float] = {}
        self._total: dict[int, int] = {}
        self._done: dict[int, int] = {}
        self._n = 0

    def start(self, description: str, total: int, completed: int = 0) -> int | None:
        if description != "epoch":
            return None
        self._n += 1
        self._t0[self._n], self._total[self._n], self._done[self._n] = (
            time.perf_counter(),
            total,
            completed,
        )
        return self._n

    def advance(self, task: int | None, status: str | None = None) -> None:
        if task is None:
            return
        self._done[task] += 1
        now = time.perf_counter()
        took, self._t0[task] = now - self._t0[task], now
        print(
            f"    epoch {self._done[task]:>3}/{self._total[task]}  {status or ''}  ({took:.1f}s)",
            file=self.out,
            flush=True,
        )

    def stop(self, task: int | None) -> None:
        pass


def _kind(exc: BaseException) -> tuple[str, str, str]:
    """(exit-code kind, message, hint) for an exception from the run."""
    while isinstance(exc, StageError):
        exc = exc.cause
    if isinstance(exc, TinyLMError):
        return exc.kind, str(exc), exc.hint
    if isinstance(exc, MemoryError):
        return "training", "out of memory", "use --preset low-memory or a smaller --batch-size"
    if isinstance(exc, DataError):
        return "corpus", str(exc), "fix the corpus rows named above"
    if isinstance(exc, ConfigError):
        return "usage", str(exc), "fix the flag or preset value named above"
    if isinstance(exc, UsageError):
        if "already completed" in str(exc):
            return "resume", str(exc), "the run is complete; see training_metrics.json"
        return "usage", str(exc), ""
    return (
        "training",
        f"{type(exc).__name__}: {exc}",
        "the last checkpoint is kept: fix the cause and continue with --resume",
    )


def _summary(opts: Options, result: Any) -> None:
    import json

    clock = opts.clock
    doc = json.loads(opts.metrics_file.read_text("utf-8"))
    final = doc["final"]
    print("\n==> summary", flush=True)
    for name in PhaseClock.PHASES:
        if name in clock.times:
            print(f"    {name:<14}{clock.times[name]:8.1f} s")
    print(f"    {'total':<14}{sum(clock.times.values()):8.1f} s")
    untrained = final.get("val_loss_untrained")
    untrained_s = f" (untrained {untrained:.3f})" if untrained is not None else ""
    print(f"    val_loss {final['val_loss']:.4f}{untrained_s} after {final['epochs']} epochs")
    print("\n    artifacts:")
    run = result.run_dir.root
    for label, path in (
        ("metrics", opts.metrics_file),
        ("tokenizer", opts.tokenizer_dir),
        ("corpus", opts.corpus_dir),
        ("final weights", Path(doc.get("final_weights") or run)),
        ("samples", run / "artifacts" / "samples.txt"),
        ("run dir", run),
    ):
        print(f"      {label:<14}{path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = Options(
        output_dir=args.output_dir,
        skip_corpus=args.skip_corpus,
        skip_tokenizer=args.skip_tokenizer,
        resume=args.resume,
        preset=args.preset,
    )
    t0 = time.perf_counter()
    try:
        check_prerequisites(opts, args.min_free_mb)
        from kitchen import run_recipe

        kwargs: dict[str, Any] = {"adapters": "hf", "progress": EpochPrinter()}
        if args.resume:
            kwargs["resume"] = opts.run_dir
            print("    resuming from the last checkpoint in", opts.run_dir, flush=True)
        else:
            config = presets.resolve(
                args.preset,
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                vocab_size=args.vocab_size,
                seed=args.seed,
                corpus="bilingual" if args.bilingual else args.corpus,
                sample_prompts=BILINGUAL_PROMPTS if args.bilingual else None,
                max_val_loss=args.max_val_loss,
            )
            kwargs.update(config=config, run_dir=opts.run_dir)
        if args.resume and any(
            v is not None for v in (args.epochs, args.batch_size, args.learning_rate)
        ):
            print("    note: --resume keeps the run's hyper-parameters; flags ignored")
        result = run_recipe(recipe(opts), **kwargs)
    except KeyboardInterrupt:
        opts.clock.stop()
        print(
            f"\nerror: interrupted. Continue with: python -m examples.tiny_lm --resume "
            f"--output-dir {opts.output_dir}",
            file=sys.stderr,
        )
        return EXIT_CODES["interrupted"]
    except Exception as exc:
        opts.clock.stop()
        kind, message, hint = _kind(exc)
        if isinstance(exc, StageError) and kind == "training":
            message = f"{exc.path}: {message}"
        print(f"\nerror ({kind}): {message}", file=sys.stderr)
        if hint:
            print(f"  fix: {hint}", file=sys.stderr)
        return EXIT_CODES[kind]
    opts.clock.stop()
    _summary(opts, result)
    print(f"\ndone in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


__all__ = ["EXIT_CODES", "TrainingFailed", "main"]

"""The ``kitchen`` command line.

Imports are deferred into each command so ``kitchen --help`` stays fast and torch-free.
Every expected failure prints one line to stderr and exits non-zero (2 for bad input);
tracebacks appear only with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _cmd_list(args: argparse.Namespace) -> int:
    from kitchen.recipes.registry import list_recipes

    for recipe in list_recipes():
        print(f"{recipe.name}\t{recipe.description}")
    return EXIT_OK


def _cmd_describe(args: argparse.Namespace) -> int:
    from kitchen.dsl import render
    from kitchen.recipes.registry import get_recipe

    if args.cache:
        from kitchen.cli.describe_cache import describe_cache

        return describe_cache(args.target)
    recipe = get_recipe(args.target)
    wf = recipe.workflow()
    if args.format == "json":
        print(render.dumps(wf))
    elif args.format == "mermaid":
        print(render.to_mermaid(wf))
    else:
        print(render.to_tree(wf))
    return EXIT_OK


def _load_run_file(path: str) -> tuple[str, dict[str, Any], str | None]:
    from kitchen.config import read_yaml
    from kitchen.errors import UsageError

    data = read_yaml(path)
    recipe = data.pop("recipe", None)
    if not isinstance(recipe, str):
        raise UsageError(f"{path}: add a top-level 'recipe: NAME' field (see `kitchen list`)")
    adapters = data.pop("adapters", None)
    config = data.pop("config", None)
    if config is None:
        config = data
    elif data:
        raise UsageError(
            f"{path}: unexpected top-level fields {sorted(data)}; put them under config"
        )
    if not isinstance(config, dict):
        raise UsageError(f"{path}: 'config' must be a mapping")
    return recipe, config, adapters


def _cmd_run(args: argparse.Namespace) -> int:

    from kitchen.launch import run_recipe
    from kitchen.recipes.registry import get_recipe
    from kitchen.telemetry.logging import configure_logging

    # At the default levels a failure is the CLI's one error line, not log lines too.
    configure_logging(args.log_level, cli_reports_failures=args.log_level in ("warning", "error"))
    target: str = args.recipe
    config: dict[str, Any] = {}
    adapters = args.adapters
    if target.endswith((".yaml", ".yml", ".json")) or _is_file(target):
        target, config, file_adapters = _load_run_file(target)
        adapters = adapters or file_adapters
    recipe = get_recipe(target)
    progress = None
    if not args.no_progress:
        from kitchen.telemetry.console import ConsoleProgress

        progress = ConsoleProgress()
    result = run_recipe(
        recipe,
        adapters=adapters or "noop",
        config=config,
        overrides=args.set or [],
        run_dir=args.run_dir,
        resume=args.resume,
        progress=progress,
        metrics=args.metrics,
    )
    state = result.context.state
    # Numbers only: paths and texts (e.g. a generated sample) are printed by their stages.
    summary = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in state.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    )
    print(f"run complete: {result.run_dir.location}" + (f" ({summary})" if summary else ""))
    return EXIT_OK


def _is_file(path: str) -> bool:
    try:
        from pathlib import Path

        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a file, a recipe name
        return False


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kitchen",
        description="Write a training workflow once; run it on noop, hf or remote adapters.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="list recipes (name and description)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("describe", help="print a recipe's workflow, or a run's stage cache")
    p.add_argument("target", metavar="RECIPE", help="recipe name (or RUN_DIR with --cache)")
    p.add_argument("--format", choices=["tree", "json", "mermaid"], default="tree")
    p.add_argument("--cache", action="store_true", help="show stage cache keys of RUN_DIR")
    p.set_defaults(func=_cmd_describe)

    p = sub.add_parser("run", help="run a recipe (or a YAML run file)")
    p.add_argument("recipe", metavar="RECIPE_OR_YAML")
    p.add_argument(
        "--adapters", default=None, metavar="noop|hf|remote", help="adapter family (default noop)"
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)"
    )
    p.add_argument("--run-dir", default=None, help="where to write the run (default runs/<id>)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    p.add_argument(
        "--metrics",
        default=None,
        metavar="SINKS",
        help="extra metrics sinks, comma-separated: tensorboard,mlflow,wandb (jsonl is always on)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_cmd_run)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


#: Commands contributed by other modules (report, export, serve, ...): each registers
#: its sub-parser. Kept as import paths so --help imports nothing heavy.
_EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def _register_optional_commands() -> None:
    import importlib

    _EXTRA_COMMANDS.clear()  # main() may be called more than once in a process (tests)
    for module in (
        "kitchen.cli.report",
        "kitchen.cli.export",
        "kitchen.cli.serve",
        "kitchen.cli.push",
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        _EXTRA_COMMANDS.append(mod.register)


def main(argv: Sequence[str] | None = None) -> int:
    _register_optional_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from kitchen.errors import KitchenError, StageError

    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into e.g. `head` that closed early: not an error of ours.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KitchenError as exc:
        if args.debug:
            raise
        code = exc.exit_code
        message = str(exc)
        if isinstance(exc, StageError) and isinstance(exc.cause, KitchenError):
            code = exc.cause.exit_code
            message = f"{exc.cause} (in stage {exc.path})"
        print(f"error: {_one_line(message)}", file=sys.stderr)
        return code
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(rerun with --debug for a traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(text: str) -> str:
    """Errors are one line: the lines of a multi-line message are joined."""
    return " | ".join(part.strip() for part in text.splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())

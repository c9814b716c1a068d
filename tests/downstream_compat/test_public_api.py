"""Pins the public API that downstream cookbooks import. A failure here is a breaking change:
bump the major version and write a migration note, or restore the signature."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import kitchen
from kitchen import Recipe
from kitchen.recipes.builtin import sft
from kitchen.workflows.supervised import SupervisedConfig, supervised_workflow


def sig(obj: object) -> str:
    return str(inspect.signature(obj))  # type: ignore[arg-type]


def test_top_level_exports() -> None:
    for name in [
        "stage",
        "loop",
        "conditional",
        "parallel",
        "branch",
        "workflow",
        "Workflow",
        "Context",
        "Runner",
        "ResumePoint",
        "run",
        "Checkpoint",
        "Ports",
        "build_ports",
        "run_recipe",
        "Recipe",
        "get_recipe",
        "list_recipes",
        "register",
        "KitchenError",
        "ConfigError",
        "DataError",
        "StageError",
        "WorkflowError",
    ]:
        assert hasattr(kitchen, name), name


def test_dsl_signatures() -> None:
    assert sig(kitchen.stage) == (
        "(fn: 'Callable[..., Any] | Stage', *, name: 'str | None' = None, "
        "outputs: 'Sequence[str]' = (), replay: 'bool | None' = None, "
        "rollback: 'Callable[..., Any] | None' = None, cache: 'Any' = None, "
        "**params: 'Any') -> 'Stage'"
    )
    assert sig(kitchen.loop) == (
        "(name: 'str', over: 'LoopSource | Iterable[Any]', *body: 'Any', "
        "progress: 'bool' = False) -> 'Loop'"
    )
    assert sig(kitchen.conditional) == (
        "(name: 'str', when: 'Callable[[Any], Any]', *then: 'Any', "
        "orelse: 'Sequence[Any]' = ()) -> 'Conditional'"
    )
    assert (
        sig(kitchen.parallel) == "(name: 'str', *branches: 'Branch', **named: 'Any') -> 'Parallel'"
    )
    assert (
        sig(kitchen.workflow)
        == "(name: 'str', *body: 'Any', description: 'str' = '') -> 'Workflow'"
    )


def test_recipe_shape() -> None:
    fields = [f for f in Recipe.__dataclass_fields__]
    assert fields == [
        "name",
        "description",
        "config_model",
        "build",
        "adapters",
        "adapter_defaults",
    ]
    assert sig(Recipe.config) == (
        "(self, data: 'Mapping[str, Any] | None' = None, overrides: 'Iterable[str]' = ()) -> 'Any'"
    )
    assert sig(kitchen.run_recipe).startswith(
        "(recipe: 'Recipe', *, adapters: 'str' = 'noop', "
        "config: 'Mapping[str, Any] | None' = None, "
        "overrides: 'Sequence[str]' = (), run_dir: 'str | Path | None' = None, "
        "resume: 'str | Path | None' = None"
    )


def test_sft_recipe_as_a_cookbook_imports_it() -> None:
    recipe = sft()
    assert recipe.name == "sft"
    assert recipe.config_model is SupervisedConfig
    cfg = recipe.config({"epochs": 1}, ["batch_size=4"])
    assert (cfg.epochs, cfg.batch_size) == (1, 4)
    wf = recipe.workflow(cfg)
    assert wf.name == "supervised"
    assert "epoch/batch/forward_backward" in wf.paths()
    assert "epoch/batch/checkpoint_due/checkpoint" in wf.paths()
    # A cookbook extends the built-in workflow with its own stages.
    extended = supervised_workflow(
        cfg, name="mine", setup=[kitchen.stage(lambda ctx: None, name="prep")]
    )
    assert extended.paths()[0] == "prep"


def test_supervised_config_fields_are_stable() -> None:
    required = {
        "seed",
        "dataset",
        "eval_dataset",
        "eval_fraction",
        "train_on",
        "max_length",
        "epochs",
        "batch_size",
        "learning_rate",
        "lr_schedule",
        "warmup_steps",
        "weight_decay",
        "grad_clip_norm",
        "eval_every",
        "checkpoint_every",
        "max_steps",
        "model",
    }
    assert required <= set(SupervisedConfig.model_fields)


def test_entry_point_registration_is_discovered_by_the_cli(tmp_path: Path) -> None:
    pkg = tmp_path / "my_cookbook"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel
            from kitchen import Recipe, stage, workflow

            class Cfg(BaseModel):
                n: int = 1

            def hello(ctx):
                return {"hello": ctx.config.n}

            recipe = Recipe(
                name="hello", description="says hello", config_model=Cfg,
                build=lambda cfg: workflow("hello", stage(hello)),
            )
            """
        )
    )
    dist = tmp_path / "my_cookbook-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cookbook\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[kitchen.recipes]\nhello = my_cookbook:recipe\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "kitchen", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "hello\tsays hello" in out.stdout.splitlines()
    assert any(line.startswith("sft\t") for line in out.stdout.splitlines())
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "kitchen",
            "run",
            "hello",
            "--run-dir",
            str(tmp_path / "r"),
            "--set",
            "n=7",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "hello=7" in run.stdout

"""rl / dpo / distill on the hf adapters learn: a tiny from-config Llama on CPU.

Each run is the recipe's own (``run_recipe(..., adapters="hf")``) with a few overrides, and
each test compares an early window of the logged metric with a late window (and with the
untrained start), for several seeds. Measured figures are printed (``-s``).

The runs use the recipes' hf defaults, which train the tiny model in full
(``HF_FULL_DEFAULTS``; rl and dpo also set an AdamW-sized learning rate). The sft recipe's
LoRA default (``TINY_HF_MODEL``) would not learn these objectives: a LoRA adapter on
*randomly initialised* frozen weights with tied embeddings cannot concentrate probability on
any token (the frozen final RMSNorm fixes the hidden-state norm at sqrt(64) = 8 and the
frozen embedding rows have norm ~0.16, so every logit stays within about +-1.3, under 0.8 %
of the mass over 512 tokens). Under it RL reward stayed at chance (~0.015) and DPO margins
at ~0.03.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.hf

pytest.importorskip("torch")
pytest.importorskip("kitchen.adapters.hf.training", reason="hf adapter not landed yet")
pytest.importorskip("kitchen.adapters.hf.wiring", reason="hf wiring not landed yet")

from kitchen.launch import RunResult, run_recipe  # noqa: E402
from kitchen.recipes.distill import distill  # noqa: E402
from kitchen.recipes.dpo import dpo  # noqa: E402
from kitchen.recipes.rl import rl  # noqa: E402

SEEDS = [0, 1, 2]


def _finite(records: list[dict[str, Any]], key: str) -> list[float]:
    xs = [float(r[key]) for r in records if key in r]
    assert xs, f"no {key} logged"
    assert all(math.isfinite(x) for x in xs), f"{key} not finite: {xs}"
    return xs


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _finished(res: RunResult, keys: list[str], mode: str = "full") -> list[dict[str, Any]]:
    """The run completed on the hf adapters and metrics.jsonl holds every key, finite."""
    manifest = res.run_dir.read_manifest()
    assert manifest.get("status") == "completed", manifest.get("status")
    assert manifest.get("adapters") == "hf"
    assert res.run_dir.read_config()["model"]["mode"] == mode  # full: the recipes' hf default
    assert res.run_dir.metrics_path.is_file()
    records = res.run_dir.metrics()
    for key in keys:
        _finite(records, key)
    return records


def _report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[hf learning] {line}")


@pytest.mark.parametrize("seed", SEEDS)
def test_hf_rl_reward_rises(tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Arithmetic env as shipped (a+b= with a, b in {0, 1}; one answer token; shaped reward
    for a near-miss integer): mean reward over the last 5 of 20 steps far above the first 5."""
    steps, k = 20, 5
    res = run_recipe(
        rl(),
        adapters="hf",
        run_dir=tmp_path / "rl",
        overrides=[f"seed={seed}", f"num_steps={steps}"],
    )
    recs = _finished(res, ["reward", "reward/max", "rollout/neg_logprob", "loss", "val_reward"])
    rewards = _finite(recs, "reward")
    assert len(rewards) == steps
    start = rewards[0]  # sampled from the untrained weights
    early, late = _mean(rewards[:k]), _mean(rewards[-k:])
    nlp = _finite(recs, "rollout/neg_logprob")
    val = _finite(recs, "val_reward")[-1]
    _report(
        capsys,
        f"rl seed={seed}: reward untrained={start:.3f} first{k}={early:.3f} last{k}={late:.3f}; "
        f"neg_logprob {nlp[0]:.2f} -> {nlp[-1]:.2f}; final exact-match val_reward={val:.3f}",
    )
    assert start < 0.1  # ~3 answer tokens among 512: near-chance at the start
    assert late > early + 0.3
    assert late > start + 0.3
    assert nlp[-1] < nlp[0] - 2.0  # the policy sharpened from ~uniform (ln 512 = 6.24)


@pytest.mark.parametrize("seed", SEEDS)
def test_hf_dpo_margin_grows(tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Synthetic pairs (correct sum chosen over an off-by-one): the chosen-minus-rejected
    reward margin and the preference accuracy rise from the first 6 steps to the last 6."""
    k = 6
    res = run_recipe(
        dpo(),
        adapters="hf",
        run_dir=tmp_path / "dpo",
        overrides=[f"seed={seed}", "epochs=6"],
    )
    recs = _finished(res, ["dpo/margin", "dpo/accuracy", "loss", "val/dpo_margin", "val_loss"])
    margins = _finite(recs, "dpo/margin")
    acc = _finite(recs, "dpo/accuracy")
    losses = [float(r["loss"]) for r in recs if "dpo/margin" in r]
    assert len(margins) == 36  # 42 train pairs / batch 8 = 6 steps x 6 epochs
    early, late = _mean(margins[:k]), _mean(margins[-k:])
    acc_early, acc_late = _mean(acc[:k]), _mean(acc[-k:])
    loss_early, loss_late = _mean(losses[:k]), _mean(losses[-k:])
    _report(
        capsys,
        f"dpo seed={seed}: margin first{k}={early:.3f} last{k}={late:.3f}; accuracy "
        f"{acc_early:.3f} -> {acc_late:.3f}; loss {loss_early:.3f} -> {loss_late:.3f}",
    )
    # The reference is the initial weights, so the untrained policy's margin is exactly 0.
    assert abs(margins[0]) < 1e-3
    assert late > early + 0.2
    assert acc_late > acc_early + 0.15
    assert loss_late < loss_early - 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_hf_distill_kl_falls(tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Off-policy distillation from a self-SFT teacher: student-teacher KL over the last 5 of
    20 steps at least 3x below the first 5, and held-out KL below the untrained student's."""
    steps, k = 20, 5
    res = run_recipe(
        distill(),
        adapters="hf",
        run_dir=tmp_path / "d",
        overrides=[f"seed={seed}", f"num_steps={steps}"],
    )
    recs = _finished(res, ["kl", "loss", "val_kl", "kl/train_fixed"])
    kl = _finite(recs, "kl")
    assert len(kl) == steps
    early, late = _mean(kl[:k]), _mean(kl[-k:])
    val = _finite(recs, "val_kl")  # logged before the first step and after the last
    assert len(val) >= 2
    _report(
        capsys,
        f"distill seed={seed}: kl first{k}={early:.3f} last{k}={late:.3f} "
        f"({early / late:.1f}x); val_kl untrained={val[0]:.3f} final={val[-1]:.3f}",
    )
    assert late < early / 3
    assert val[-1] < val[0] / 1.5


def test_dpo_with_adapter_disabled_reference_runs_and_learns(tmp_path: Path) -> None:
    """reference='adapter_disabled' on a LoRA model: the base model's logprobs (through
    ``forward_with_adapter_disabled``) are the reference; with LoRA's B starting at zero
    they equal the initial policy's, so the first margin is ~0 and the run matches
    reference='precomputed' step for step."""
    common = ["model.mode=lora", "epochs=2", "seed=0"]
    runs = {}
    for ref in ("precomputed", "adapter_disabled"):
        res = run_recipe(
            dpo(), adapters="hf", run_dir=tmp_path / ref, overrides=[*common, f"reference={ref}"]
        )
        recs = _finished(res, ["dpo/margin", "dpo/accuracy"], mode="lora")
        runs[ref] = [r["dpo/margin"] for r in recs if "dpo/margin" in r]
    assert abs(runs["adapter_disabled"][0]) < 1e-4
    assert runs["adapter_disabled"] == pytest.approx(runs["precomputed"], rel=1e-4, abs=1e-5)


def test_adapter_disabled_reference_needs_a_lora_model(tmp_path: Path) -> None:
    from kitchen.errors import StageError

    with pytest.raises(StageError, match="needs a LoRA/QLoRA model"):
        run_recipe(
            dpo(),
            adapters="hf",
            run_dir=tmp_path / "full",
            overrides=["model.mode=full", "epochs=1", "reference=adapter_disabled"],
        )

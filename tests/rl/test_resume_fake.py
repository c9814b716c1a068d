"""Each workflow, interrupted after a checkpoint and resumed, ends with the same metric
history and weights as an uninterrupted run (in-test fake model; the noop/hf versions run
through ``kitchen run`` in tests/test_workflow_*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kitchen.context import Context
from kitchen.errors import StageError
from kitchen.metrics import MetricsRecorder
from kitchen.rundir import RunDir
from kitchen.runner.runner import ResumePoint, Runner
from kitchen.workflows.distillation import DistillConfig, distill_workflow
from kitchen.workflows.preference import DPOConfig, dpo_workflow
from kitchen.workflows.reinforcement import RLConfig, rl_workflow
from tests.rl.fakes import ByteTokenizer, FakeTraining, MemoryMetrics


class Crash(RuntimeError):
    pass


class CrashingTraining(FakeTraining):
    """Raises on the checkpoint save after ``crash_after`` successful ones."""

    def __init__(self, crash_after: int | None = None) -> None:
        super().__init__()
        self.crash_after = crash_after
        self.ckpts = 0

    def save_state(self, name: str, user_metadata: Any = None) -> Any:
        if name.startswith("ckpt-"):
            if self.crash_after is not None and self.ckpts >= self.crash_after:
                raise Crash("simulated kill")
            self.ckpts += 1
        return super().save_state(name, user_metadata)


def _ctx(cfg: Any, training: FakeTraining, run: RunDir, mem: MemoryMetrics) -> Context:
    from kitchen.ports.bundle import Ports

    ports = Ports(training=training, tokenizer=ByteTokenizer())
    rec = MetricsRecorder([mem])
    rec.count = len(mem.records)
    return Context(cfg, ports, metrics=rec, run=run)


CASES = [
    (
        RLConfig,
        rl_workflow,
        {
            "num_steps": 8,
            "checkpoint_every": 3,
            "pipeline_rollouts": True,
            "kl_beta": 0.01,
            "loss_fn": "ppo",
            "ppo_epochs": 2,
        },
    ),
    (DPOConfig, dpo_workflow, {"epochs": 2, "checkpoint_every": 4, "eval_every": 3}),
    (
        DistillConfig,
        distill_workflow,
        {"num_steps": 8, "checkpoint_every": 3, "eval_every": 4, "teacher_sft_steps": 5},
    ),
    (
        DistillConfig,
        distill_workflow,
        {"mode": "on_policy", "num_steps": 8, "checkpoint_every": 3, "teacher_sft_steps": 5},
    ),
]


@pytest.mark.parametrize(("model", "build", "over"), CASES)
def test_interrupted_and_resumed_equals_uninterrupted(
    tmp_path: Path, model: Any, build: Any, over: dict[str, Any]
) -> None:
    cfg = model(**over)
    wf = build(cfg)
    ref_mem = MemoryMetrics()
    ref_train = CrashingTraining()
    Runner().run(wf, _ctx(cfg, ref_train, RunDir.create(tmp_path / "ref"), ref_mem))

    run = RunDir.create(tmp_path / "crash")
    mem = MemoryMetrics()
    crashing = CrashingTraining(crash_after=1)
    with pytest.raises(StageError):
        Runner().run(wf, _ctx(cfg, crashing, run, mem))
    record = run.latest_checkpoint()
    assert record is not None
    position = [(str(n), None if i is None else int(i)) for n, i in record["position"]]
    # A fresh process: new model object; only the saved states survive (they are "on disk").
    resumed = CrashingTraining()
    resumed.saved = crashing.saved
    mem2 = MemoryMetrics()
    mem2.records = mem.records[: record["metrics_count"]]
    Runner().run(wf, _ctx(cfg, resumed, run, mem2), resume=ResumePoint(position, record))

    assert mem2.records == ref_mem.records
    assert resumed.model.w == ref_train.model.w

"""The distillation workflow.

load_dataset → prepare_teacher → evaluate (initial KL) →
step loop [ distill_step → log → if eval_due: evaluate
            → if checkpoint_due: drain, checkpoint ] → drain → evaluate → save_final
"""

from __future__ import annotations

from kitchen.checkpoint import Checkpoint
from kitchen.dsl import conditional, loop, stage, workflow
from kitchen.dsl.nodes import Workflow
from kitchen.workflows.distillation import stages as s


def distill_workflow(config: object = None, *, name: str = "distillation") -> Workflow:
    return workflow(
        name,
        stage(s.load_dataset, replay=True, outputs=["num_train", "num_eval"]),
        stage(s.prepare_teacher, replay=True),
        stage(s.evaluate, name="initial_eval"),
        loop(
            "step",
            s.num_steps,
            stage(s.distill_step),
            stage(s.log_step, name="log"),
            conditional("eval_due", s.eval_due, stage(s.evaluate)),
            conditional("checkpoint_due", s.checkpoint_due, stage(s.drain), stage(Checkpoint())),
            progress=True,
        ),
        stage(s.drain, name="drain"),
        stage(s.evaluate, name="final_eval"),
        stage(s.save_final),
        description="Distillation from a teacher SamplingClient: token-level KL/JSD "
        "(off-policy) or reverse-KL advantages on student samples (on-policy).",
    )

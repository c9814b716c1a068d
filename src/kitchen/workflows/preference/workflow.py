"""The preference (DPO) workflow.

load_dataset → reference (once; stored in run state) →
epoch loop [ batch loop [ dpo_step → log → if eval_due: evaluate
                          → if checkpoint_due: drain, checkpoint ] ]
→ drain → evaluate → save_final
"""

from __future__ import annotations

from kitchen.checkpoint import Checkpoint
from kitchen.dsl import conditional, loop, stage, workflow
from kitchen.dsl.nodes import Workflow
from kitchen.workflows.preference import stages as s


def dpo_workflow(config: object = None, *, name: str = "preference") -> Workflow:
    return workflow(
        name,
        stage(s.load_dataset, replay=True, outputs=["num_train", "num_eval"]),
        stage(s.reference, outputs=["ref_train", "ref_eval"]),
        loop(
            "epoch",
            s.epochs,
            loop(
                "batch",
                s.batches,
                stage(s.dpo_step),
                stage(s.log_step, name="log"),
                conditional("eval_due", s.eval_due, stage(s.evaluate)),
                conditional(
                    "checkpoint_due", s.checkpoint_due, stage(s.drain), stage(Checkpoint())
                ),
                progress=True,
            ),
            progress=True,
        ),
        stage(s.drain, name="drain"),
        stage(s.evaluate, name="final_eval"),
        stage(s.save_final),
        description="DPO (sigmoid / IPO / hinge) via forward + cross_entropy surrogate weights.",
    )

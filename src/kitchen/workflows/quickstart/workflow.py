"""prepare_corpus → train_tokenizer → [supervised workflow with a baseline eval] → sample."""

from __future__ import annotations

from kitchen.dsl import stage
from kitchen.dsl.nodes import Workflow
from kitchen.workflows.quickstart import stages as q
from kitchen.workflows.supervised.workflow import supervised_workflow


def quickstart_workflow(config: object = None) -> Workflow:
    return supervised_workflow(
        config,
        name="quickstart",
        setup=[
            stage(q.prepare_corpus, replay=True, outputs=["train_source", "eval_source"]),
            stage(q.train_tokenizer, replay=True),
        ],
        before_training=[stage(q.baseline_eval, outputs=["val_loss_untrained"])],
        finish=[stage(q.sample_text, outputs=["sample"])],
    )

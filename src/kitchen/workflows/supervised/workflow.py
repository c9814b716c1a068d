"""The supervised fine-tuning workflow.

    load_dataset → init_session →
    epoch loop [ shuffle → batch loop [ forward_backward → optim_step → log_step →
                 if checkpoint_due: drain, checkpoint ] → drain → if epoch-end eval: evaluate ]
    → save_final

``forward_backward`` and ``optim_step`` only submit; ``log_step`` awaits the *previous*
step, so step N+1 is queued on the backend before step N is awaited.
"""

from __future__ import annotations

from collections.abc import Sequence

from kitchen.checkpoint import Checkpoint
from kitchen.dsl import conditional, loop, stage, workflow
from kitchen.dsl.nodes import Node, Workflow
from kitchen.workflows.supervised import stages as s


def supervised_workflow(
    config: object = None,
    *,
    name: str = "supervised",
    setup: Sequence[Node] = (),
    before_training: Sequence[Node] = (),
    finish: Sequence[Node] = (),
) -> Workflow:
    """The workflow. Extension points: ``setup`` nodes run first (e.g. train a tokenizer),
    ``before_training`` after the session is initialised (e.g. a baseline eval), ``finish``
    last."""
    return workflow(
        name,
        *setup,
        stage(s.load_dataset, replay=True, outputs=["num_train", "num_eval"]),
        stage(s.init_session, replay=True),
        *before_training,
        loop(
            "epoch",
            s.epochs,
            stage(s.shuffle_epoch, name="shuffle", replay=True),
            loop(
                "batch",
                s.batches,
                stage(s.forward_backward),
                stage(s.optim_step),
                stage(s.log_step, name="log"),
                conditional(
                    "eval_due", s.eval_due, stage(s.drain, name="drain_for_eval"), stage(s.evaluate)
                ),
                conditional(
                    "checkpoint_due", s.checkpoint_due, stage(s.drain), stage(Checkpoint())
                ),
                progress=True,
            ),
            stage(s.drain, name="drain"),
            conditional("epoch_eval", s.eval_at_epoch_end, stage(s.evaluate)),
            progress=True,
        ),
        stage(s.save_final),
        *finish,
        description="Supervised fine-tuning with pipelined forward_backward/optim_step futures.",
    )

"""The reinforcement-learning workflow.

    setup → step loop [ rollout → train → log → if eval_due: evaluate
                        → if checkpoint_due: drain, checkpoint ] → drain → evaluate → save_final

``rollout`` samples a batch of env groups through a SamplingClient snapshot of the current
weights (or takes the batch prefetched during the previous step); ``train`` computes group
advantages, builds ``importance_sampling``/``ppo`` datums and submits ``ppo_epochs`` passes
of forward_backward + optim_step without waiting (plus the k3 KL term when ``kl_beta > 0``),
then prefetches the next batch when ``pipeline_rollouts`` is on; ``log`` awaits the previous
step's futures.
"""

from __future__ import annotations

from kitchen.checkpoint import Checkpoint
from kitchen.dsl import conditional, loop, stage, workflow
from kitchen.dsl.nodes import Workflow
from kitchen.workflows.reinforcement import stages as s


def rl_workflow(config: object = None, *, name: str = "reinforcement") -> Workflow:
    return workflow(
        name,
        stage(s.setup, replay=True),
        loop(
            "step",
            s.num_steps,
            stage(s.rollout),
            stage(s.train),
            stage(s.log_step, name="log"),
            conditional("eval_due", s.eval_due, stage(s.evaluate)),
            conditional("checkpoint_due", s.checkpoint_due, stage(s.drain), stage(Checkpoint())),
            progress=True,
        ),
        stage(s.drain, name="drain"),
        stage(s.evaluate, name="final_eval"),
        stage(s.save_final),
        description="Group-advantage RL (GRPO/RLOO) with importance sampling or PPO.",
    )

"""The workflow DSL and its IR."""

from kitchen.dsl.builders import branch, conditional, loop, parallel, stage, workflow
from kitchen.dsl.nodes import Branch, Conditional, Loop, Node, Parallel, Stage, Workflow
from kitchen.dsl.render import diff, dumps, fingerprint, from_json, to_json, to_mermaid, to_tree

__all__ = [
    "Branch",
    "Conditional",
    "Loop",
    "Node",
    "Parallel",
    "Stage",
    "Workflow",
    "branch",
    "conditional",
    "diff",
    "dumps",
    "fingerprint",
    "from_json",
    "loop",
    "parallel",
    "stage",
    "to_json",
    "to_mermaid",
    "to_tree",
    "workflow",
]

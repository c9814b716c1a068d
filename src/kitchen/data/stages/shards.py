"""Fan a shardable data stage out over shards with the ``parallel`` block.

``sharded(Gate(out_dir=..., checks=...), 4)`` returns two nodes::

    parallel("gate_shards",
             branch("shard0", stage(Gate(..., shard=0, num_shards=4, output="gated.shard0")),
                    outputs=["gated.shard0"]),
             ...)
    stage(MergeShards(Gate(...), 4))        # writes the merged manifest -> ctx.state["gated"]

The branches run on the runner's executor (threads by default, Ray with
:class:`kitchen.runner.ray_executor.RayExecutor`); every shard and the merge are cacheable,
so changing one shard's input re-runs that shard and the merge only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kitchen.context import Context
from kitchen.data.stages.manifest import ShardedStage, code_version, state_path
from kitchen.dsl import branch, parallel, stage
from kitchen.dsl.nodes import Node


def shard_key(output: str, i: int) -> str:
    return f"{output}.shard{i}"


@dataclasses.dataclass
class MergeShards:
    """Merge the shard outputs of ``template`` into its ``output`` (cacheable)."""

    template: ShardedStage
    num_shards: int

    @property
    def name(self) -> str:
        return f"{self.template.kind}_merge"

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.template.outputs[0],)

    @property
    def cache(self) -> Any:
        if not self.template.cacheable:
            return None
        from kitchen.runner.cache import CachePolicy

        keys = tuple(shard_key(self.template.outputs[0], i) for i in range(self.num_shards))
        return CachePolicy(inputs=keys, version=code_version(type(self.template)))

    def __call__(self, ctx: Context) -> dict[str, Any]:
        out = self.template.outputs[0]
        manifests: list[Path] = [
            state_path(ctx, shard_key(out, i), f"shard {i} manifest")
            for i in range(self.num_shards)
        ]
        return self.template.merge(ctx, manifests)


def sharded(template: ShardedStage, num_shards: int, *, name: str | None = None) -> list[Node]:
    """The nodes running ``template`` on ``num_shards`` shards in parallel, then merging."""
    if num_shards <= 1:
        return [stage(template)]
    out = template.outputs[0]
    branches = []
    for i in range(num_shards):
        part = dataclasses.replace(
            template, shard=i, num_shards=num_shards, output=shard_key(out, i)
        )  # type: ignore[call-arg]
        branches.append(branch(f"shard{i}", stage(part), outputs=[shard_key(out, i)]))
    return [
        parallel(name or f"{template.kind}_shards", *branches),
        stage(MergeShards(template, num_shards)),
    ]

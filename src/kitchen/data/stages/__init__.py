"""Built-in data stages: fetch → normalise → dedup → generate → gate → package.

Each stage is a small dataclass usable as a cacheable workflow node
(``stage(Normalise(out_dir="work/normalised"))``): it reads the path of the previous
stage's manifest from ``ctx.state[input]``, writes its own files and a versioned JSON
manifest into ``out_dir`` and puts the manifest's path into ``ctx.state[output]``. The
stage cache (:mod:`kitchen.runner.cache`) keys each stage on its parameters, its code and
the content of its input files, so a re-run with nothing changed does no work and a change
re-runs only what is downstream of it. See ``docs/data_pipeline.md``.
"""

from kitchen.data.stages.dedup import Dedup, dedup_records, shingles
from kitchen.data.stages.fetch import Fetch, FetchError, RateLimiter, backoff_delays
from kitchen.data.stages.gate import CommandCheck, FnCheck, Gate, Length, NonEmpty
from kitchen.data.stages.generate import Generate, TeacherTask, Template, register_extractor
from kitchen.data.stages.manifest import read_manifest, read_records, write_manifest
from kitchen.data.stages.normalise import (
    DEFAULT_RULES,
    Normalise,
    Rule,
    normalise_text,
    register_rule,
    resolve_rules,
)
from kitchen.data.stages.package import Package, load_split, split_ids
from kitchen.data.stages.shards import MergeShards, sharded
from kitchen.data.stages.sources import SourceSpec, load_sources

__all__ = [
    "DEFAULT_RULES",
    "CommandCheck",
    "Dedup",
    "Fetch",
    "FetchError",
    "FnCheck",
    "Gate",
    "Generate",
    "Length",
    "MergeShards",
    "NonEmpty",
    "Normalise",
    "Package",
    "RateLimiter",
    "Rule",
    "SourceSpec",
    "TeacherTask",
    "Template",
    "backoff_delays",
    "dedup_records",
    "load_sources",
    "load_split",
    "normalise_text",
    "read_manifest",
    "read_records",
    "register_extractor",
    "register_rule",
    "resolve_rules",
    "sharded",
    "shingles",
    "split_ids",
    "write_manifest",
]

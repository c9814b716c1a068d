"""The runner executes workflow IR over a Context."""

from kitchen.runner.cache import CacheDecision, CachePolicy, StageCache
from kitchen.runner.executor import BranchExecutor, SerialExecutor, ThreadExecutor
from kitchen.runner.runner import ResumePoint, Runner, run

__all__ = [
    "BranchExecutor",
    "CacheDecision",
    "CachePolicy",
    "ResumePoint",
    "Runner",
    "SerialExecutor",
    "StageCache",
    "ThreadExecutor",
    "run",
]

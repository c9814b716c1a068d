"""The runner executes workflow IR over a Context."""

from kitchen.runner.executor import BranchExecutor, SerialExecutor, ThreadExecutor
from kitchen.runner.runner import ResumePoint, Runner, run

__all__ = ["BranchExecutor", "ResumePoint", "Runner", "SerialExecutor", "ThreadExecutor", "run"]

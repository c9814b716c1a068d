"""Supervised fine-tuning."""

from kitchen.workflows.supervised.config import SupervisedConfig
from kitchen.workflows.supervised.workflow import supervised_workflow

__all__ = ["SupervisedConfig", "supervised_workflow"]

"""Knowledge distillation (off-policy KL/JSD, on-policy reverse KL)."""

from kitchen.workflows.distillation.config import DistillConfig
from kitchen.workflows.distillation.workflow import distill_workflow

__all__ = ["DistillConfig", "distill_workflow"]

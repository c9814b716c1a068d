"""Preference optimisation (DPO, IPO, hinge)."""

from kitchen.workflows.preference.config import DPOConfig
from kitchen.workflows.preference.workflow import dpo_workflow

__all__ = ["DPOConfig", "dpo_workflow"]

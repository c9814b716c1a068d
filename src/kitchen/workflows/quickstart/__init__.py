"""The quickstart: tokenizer + tiny model from scratch + SFT, in about a minute on CPU."""

from kitchen.workflows.quickstart.config import QuickstartConfig
from kitchen.workflows.quickstart.workflow import quickstart_workflow

__all__ = ["QuickstartConfig", "quickstart_workflow"]

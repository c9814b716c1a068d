"""HubClient adapter on huggingface_hub (Hub, HF cache, local-folder repositories) and
model cards. ``huggingface_hub`` is imported only when a Hub repository is used."""

from __future__ import annotations

from kitchen.adapters.hub.card import parse_front_matter, render_model_card, summarize_metrics
from kitchen.adapters.hub.client import HfHubClient, is_offline

__all__ = [
    "HfHubClient",
    "is_offline",
    "parse_front_matter",
    "render_model_card",
    "summarize_metrics",
]

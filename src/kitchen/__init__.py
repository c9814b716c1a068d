"""kitchen: ML training orchestration on ports and adapters."""

__version__ = "0.1.0"

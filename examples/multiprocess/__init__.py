"""Data-parallel training of a kitchen recipe under ``accelerate launch`` / ``torchrun``."""

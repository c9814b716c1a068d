"""Cookbook example 4: one LoRA adapter per codebase, trained in the background."""

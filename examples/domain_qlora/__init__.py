"""Cookbook example 1: a domain corpus → QLoRA pipeline (see README.md)."""

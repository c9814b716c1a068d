"""Cookbook example 2: edit-model SFT (code, then structured actions) + step-wise offline RL."""

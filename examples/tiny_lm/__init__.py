"""Cookbook example 3: a small language model from scratch, in one command.

``python -m examples.tiny_lm --preset quick --output-dir out/tiny`` checks prerequisites,
prepares the corpus, trains a BPE tokenizer, trains a from-config Llama with kitchen's
supervised workflow, validates it (samples, peak RSS, p95 latency) and writes
``training_metrics.json``. See README.md.
"""

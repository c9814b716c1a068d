"""How the composition root (``kitchen.bootstrap``) builds the hf port set.

Nothing here loads a model: the training client loads lazily on its worker thread at
first use, so building ports is cheap and a bad config fails before any weights move.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from kitchen.adapters.hf.dataset import HfDatasetStore
from kitchen.adapters.hf.device import hardware_manifest
from kitchen.adapters.hf.model_spec import ModelSpec, placement
from kitchen.adapters.hf.tokenizer import HfTokenizer
from kitchen.adapters.hf.training import HfTrainingClient
from kitchen.config import validate
from kitchen.errors import ConfigError
from kitchen.ports.bundle import Ports
from kitchen.rundir import RunDir


def model_spec(config: Any) -> ModelSpec:
    """The ModelSpec from ``config.model``; errors name ``model.<field>``."""
    raw = dict(getattr(config, "model", None) or {})
    if not raw:
        raise ConfigError(
            "model",
            "the hf adapters need a model: set model.path=DIR, model.hub_id=ID or "
            "model.config={model_type: llama, ...}",
        )
    try:
        return validate(ModelSpec, raw)
    except ConfigError as exc:
        field = "model" if exc.field == "<root>" else f"model.{exc.field}"
        raise ConfigError(field, str(exc).split(": ", 1)[-1]) from None


def train_or_load_tokenizer(corpus: Sequence[str], vocab_size: int, save_dir: str) -> HfTokenizer:
    """Train a BPE tokenizer on ``corpus`` and save it, or load the one already saved there
    (so a resumed run gets back exactly the tokenizer it trained)."""
    directory = Path(save_dir)
    if (directory / "tokenizer.json").is_file():
        return HfTokenizer.load(directory)
    tok = HfTokenizer.train_bpe(list(corpus), vocab_size)
    tok.save(directory)
    return tok


def _tokenizer(config: Any, spec: ModelSpec, run: RunDir | None) -> HfTokenizer | None:
    explicit = getattr(config, "tokenizer", None)
    if explicit:
        return HfTokenizer.load(explicit)
    if spec.path and (Path(spec.path) / "tokenizer.json").is_file():
        return HfTokenizer.load(spec.path)
    if spec.config is not None and run is not None and not hasattr(config, "vocab_size"):
        # A from-scratch model has no tokenizer: train a BPE on the bundled corpus, sized to
        # the model's vocabulary (saved in the run, so a resume reloads the same one).
        # Recipes that train their own (the quickstart: config.vocab_size) do it in a stage.
        from kitchen.data import corpus_path

        vocab = int(spec.config.get("vocab_size", 512))
        lines = corpus_path("train.txt").read_text("utf-8").splitlines()
        return train_or_load_tokenizer(lines, vocab, str(run.root / "tokenizer"))
    return None  # a setup stage trains one (see ports.extra["tokenizer_trainer"])


def _quiet_transformers() -> None:
    """kitchen shows its own progress; transformers' per-save shard bars are noise."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def build_ports(config: Any, run: RunDir | None) -> Ports:
    _quiet_transformers()
    spec = model_spec(config)
    # Resolve model.device / model.dtype now: a missing device fails before any work with
    # one line naming model.device, and the manifest says where the run trains.
    place = placement(spec)
    if run is not None:
        run.update_manifest(hardware=hardware_manifest(place))
    seed = int(getattr(config, "seed", 0) or 0)
    state_dir = str(run.checkpoints_dir) if run is not None else None
    quarantine = str(run.root) if run is not None else None
    on_bad_row: Literal["error", "quarantine"] = "error"
    if quarantine and getattr(config, "on_bad_row", "error") == "quarantine":
        on_bad_row = "quarantine"
    return Ports(
        training=HfTrainingClient(spec, state_dir=state_dir, seed=seed, device=str(place.device)),
        dataset=HfDatasetStore(quarantine_dir=quarantine, on_bad_row=on_bad_row),
        tokenizer=_tokenizer(config, spec, run),
        extra={"tokenizer_trainer": train_or_load_tokenizer},
    )

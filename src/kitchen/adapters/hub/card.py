"""Model cards for what kitchen publishes: ``README.md`` with YAML front-matter.

:func:`render_model_card` is pure (strings in, string out), so it is tested on its own and
used both by ``kitchen push`` and by anyone calling :class:`HfHubClient.upload` directly.
The front-matter uses the Hub's standard keys (``base_model``, ``library_name``, ``tags``,
``datasets``) plus a ``kitchen`` block with the recipe, run id and data manifest hash, so
the facts a card states are also machine-readable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

__all__ = ["parse_front_matter", "render_model_card", "summarize_metrics"]


def summarize_metrics(history: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per metric: the ``final`` value, its ``step``, and ``min``/``max`` over the run.

    ``history`` is a list of ``{"step": s, **metrics}`` records (``metrics.jsonl``);
    non-numeric values, ``time`` and NaN/inf are skipped.
    """
    out: dict[str, dict[str, float]] = {}
    for rec in history:
        step = rec.get("step")
        for key, value in rec.items():
            if key in ("step", "time") or isinstance(value, bool):
                continue
            if not isinstance(value, int | float) or not math.isfinite(value):
                continue
            v = float(value)
            s = out.get(key)
            if s is None:
                out[key] = {"final": v, "min": v, "max": v, "step": float(step or 0)}
            else:
                s.update(final=v, min=min(s["min"], v), max=max(s["max"], v))
                if step is not None:
                    s["step"] = float(step)
    return dict(sorted(out.items()))


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def render_model_card(
    repo_id: str,
    *,
    base_model: str | None = None,
    recipe: str | None = None,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    data_manifest_hash: str | None = None,
    data_manifest_source: str | None = None,
    run_id: str | None = None,
    adapters: str | None = None,
    kind: str = "adapter",
    tags: Sequence[str] = (),
    datasets: Sequence[str] = (),
    kitchen_version: str | None = None,
    license: str | None = None,
    library_name: str = "kitchen",
) -> str:
    """Render ``README.md`` text for ``repo_id``.

    ``kind`` is ``"adapter"`` (a PEFT/LoRA adapter) or ``"model"`` (full or merged weights).
    ``metrics`` is the output of :func:`summarize_metrics`. Everything is optional except
    the repository id; a missing fact is written as "not recorded", never invented.
    ``library_name`` defaults to ``kitchen``; adapters are also tagged ``peft``/``lora`` so
    the Hub lists them with other PEFT adapters (pass ``library_name="peft"`` to get the
    Hub's PEFT usage widget instead).
    """
    all_tags = ["kitchen"]
    if recipe:
        all_tags.append(recipe)
    if kind == "adapter":
        all_tags += ["peft", "lora"]
    all_tags += [t for t in tags if t not in all_tags]
    front: dict[str, Any] = {}
    if base_model:
        front["base_model"] = base_model
    front["library_name"] = library_name
    if license:
        front["license"] = license
    front["tags"] = all_tags
    if datasets:
        front["datasets"] = list(datasets)
    kitchen_meta: dict[str, Any] = {"kind": kind}
    for k, v in (
        ("recipe", recipe),
        ("run_id", run_id),
        ("adapters", adapters),
        ("data_manifest_sha256", data_manifest_hash),
        ("version", kitchen_version),
    ):
        if v:
            kitchen_meta[k] = v
    front["kitchen"] = kitchen_meta

    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    title = repo_id.rsplit("/", 1)[-1]
    lines += [f"# {title}", ""]
    what = "A LoRA adapter" if kind == "adapter" else "A model"
    base = f" for [`{base_model}`](https://huggingface.co/{base_model})" if base_model else ""
    via = f" with the kitchen recipe `{recipe}`" if recipe else " with kitchen"
    lines += [f"{what}{base}, trained{via}.", ""]

    lines += ["## Training data", ""]
    if data_manifest_hash:
        src = f" (`{data_manifest_source}`)" if data_manifest_source else ""
        lines += [f"- Data manifest sha256: `{data_manifest_hash}`{src}"]
    else:
        lines += ["- Data manifest: not recorded"]
    if config and config.get("dataset"):
        lines += [f"- Dataset: `{config['dataset']}`"]
    lines += [""]

    lines += ["## Metrics", ""]
    if metrics:
        lines += ["| metric | final | min | max | step |", "|---|---|---|---|---|"]
        for name, s in metrics.items():
            lines.append(
                f"| {name} | {_fmt(s['final'])} | {_fmt(s['min'])} | {_fmt(s['max'])} "
                f"| {int(s.get('step', 0))} |"
            )
    else:
        lines += ["No metrics recorded."]
    lines += [""]

    lines += ["## Recipe and config", ""]
    facts = [
        ("Recipe", recipe),
        ("Run id", run_id),
        ("Adapters", adapters),
        ("kitchen version", kitchen_version),
    ]
    lines += [f"- {k}: `{v}`" for k, v in facts if v]
    lines += ["", "```json", json.dumps(dict(config or {}), indent=2, sort_keys=True), "```", ""]

    if kind == "adapter" and base_model:
        lines += [
            "## Usage",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base_model}")',
            f'model = PeftModel.from_pretrained(base, "{repo_id}")',
            "```",
            "",
        ]
    return "\n".join(lines)


def parse_front_matter(card: str) -> tuple[dict[str, Any], str]:
    """Split a card into its YAML front-matter (as a dict) and its Markdown body."""
    if not card.startswith("---\n"):
        return {}, card
    end = card.find("\n---\n", 4)
    if end < 0:
        return {}, card
    meta = yaml.safe_load(card[4:end]) or {}
    return (meta if isinstance(meta, dict) else {}), card[end + 5 :]

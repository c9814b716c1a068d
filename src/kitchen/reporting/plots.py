"""Loss / reward curves from a run's ``metrics.jsonl``, drawn with matplotlib."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kitchen.errors import UsageError
from kitchen.rundir import RunDir

#: Panels in display order: (title, metric keys drawn on it).
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss", ("loss", "val_loss")),
    ("reward", ("reward", "reward/mean", "val_reward", "accuracy", "dpo/accuracy", "dpo/margin")),
    ("kl", ("kl", "val_kl", "kl/train_fixed")),
    ("learning rate", ("lr",)),
)


def series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``key``, skipping records without it and non-finite values."""
    xs: list[int] = []
    ys: list[float] = []
    for r in records:
        v = r.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            step = r.get("step", len(xs))
            ok = isinstance(step, int | float) and not isinstance(step, bool)
            xs.append(int(step) if ok and math.isfinite(step) else len(xs))  # a bad step: its place
            ys.append(float(v))
    return xs, ys


def plot_run(run_dir: str | Path, out: str | Path) -> list[str]:
    """Write a PNG of the run's curves to ``out``; returns the metric keys drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = RunDir.open(run_dir)
    records = run.metrics()
    if not records:
        raise UsageError(f"{run.metrics_path} has no metrics yet; run the recipe first")
    panels: list[tuple[str, list[str]]] = []
    for title, candidates in PANELS:
        present = [k for k in candidates if series(records, k)[0]]
        if present:
            panels.append((title, present))
    if not panels:
        raise UsageError(
            f"{run.metrics_path} has none of the plotted metrics "
            f"({', '.join(k for _, ks in PANELS for k in ks)})"
        )
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3 * len(panels)), squeeze=False)
    drawn: list[str] = []
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for key in keys:
            xs, ys = series(records, key)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=key)
            drawn.append(key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    manifest = run.read_manifest()
    fig.suptitle(f"{manifest.get('recipe', '?')} · {run.root.name}")
    fig.tight_layout()
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Render to a temp file first so a failure never leaves a truncated PNG behind.
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_path)
    return drawn

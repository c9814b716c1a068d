"""``kitchen push RUN_DIR REPO_ID``: publish a run's exported adapter with a model card.

Where the export is looked for, first match wins:

1. ``--folder DIR`` (an exported adapter or model folder anywhere);
2. ``manifest.json`` field ``export``: ``{"adapter": DIR, "merged": DIR}`` (or ``{"dir": DIR}``);
3. ``RUN_DIR/export/`` and ``RUN_DIR/artifacts/export/`` (``kitchen export --out`` layout:
   ``adapter/`` for LoRA runs or ``model/`` for full fine-tunes, optional ``merged/``; or the
   folder itself if it holds weights);
4. ``RUN_DIR/artifacts/adapter|model/`` and ``RUN_DIR/artifacts/merged/``.

``--folder OUT`` takes the same layout (the ``--out`` of ``kitchen export``); if ``OUT`` has
the ``export.json`` that ``kitchen export`` writes, it must name this run.

A folder counts as an export when it holds ``adapter_config.json`` or weight files
(``*.safetensors``, ``*.bin``, ``*.gguf``). Nothing found is a usage error (exit 2) that
says to run ``kitchen export RUN_DIR --out DIR`` first.

The card (``README.md``) is generated from the run: base model, recipe, run id, the data
manifest's sha256, a metrics summary from ``metrics.jsonl`` and the resolved config (values
of keys that look like secrets are masked). ``--hub-root DIR`` publishes to a local-folder
hub (``DIR/<repo_id>``) instead of the Hugging Face Hub.

Imports are deferred into :func:`run` so ``kitchen --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
_SECRET_WORDS = ("token", "secret", "password", "api_key", "apikey", "credential")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "push",
        help="publish a run's exported adapter (and card) to the HF Hub or a local hub",
        description=(
            "Upload the adapter exported from RUN_DIR to REPO_ID with a generated model card "
            "(base model, data manifest hash, metrics, recipe and config)."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("repo_id", metavar="REPO_ID", help="target repository, e.g. me/my-adapter")
    p.add_argument(
        "--hub-root",
        default=None,
        metavar="DIR",
        help="publish to a local-folder hub DIR/<REPO_ID> instead of the Hugging Face Hub",
    )
    p.add_argument("--private", action="store_true", help="create the Hub repository private")
    p.add_argument(
        "--include-merged",
        action="store_true",
        help="also upload the exported merged model (under merged/ in the repository)",
    )
    p.add_argument(
        "--folder",
        default=None,
        metavar="DIR",
        help="the exported folder (default: look in RUN_DIR)",
    )
    p.add_argument(
        "--base-model", default=None, help="base model id for the card (default: detect)"
    )
    p.add_argument("--commit-message", default=None, help="commit message (Hub only)")
    p.add_argument(
        "--dry-run", action="store_true", help="print the card and the files, upload nothing"
    )
    p.set_defaults(func=run)


# -- finding the export ------------------------------------------------------------------
def _is_export(path: Path) -> bool:
    if not path.is_dir():
        return False
    if (path / "adapter_config.json").is_file():
        return True
    return any(p.is_file() and p.suffix in _WEIGHT_SUFFIXES for p in path.iterdir())


def find_export(root: Path, manifest: dict[str, Any]) -> tuple[Path | None, Path | None]:
    """``(adapter_or_model_dir, merged_dir)`` exported from the run at ``root``."""
    recorded = manifest.get("export")
    if isinstance(recorded, dict):
        main = recorded.get("adapter") or recorded.get("dir") or recorded.get("model")
        merged = recorded.get("merged")
        main_p = _resolve(root, main) if isinstance(main, str) else None
        merged_p = _resolve(root, merged) if isinstance(merged, str) else None
        if main_p is not None and _is_export(main_p / "adapter") and not _is_export(main_p):
            main_p, merged_p = main_p / "adapter", merged_p or main_p / "merged"
        main_p = main_p if main_p is not None and _is_export(main_p) else None
        merged_p = merged_p if merged_p is not None and _is_export(merged_p) else None
        if main_p or merged_p:
            return main_p, merged_p
    for base in (root / "export", root / "artifacts" / "export", root / "artifacts"):
        main, merged_p = export_in(base)
        if main or merged_p:
            return main, merged_p
    return None, None


def export_in(base: Path) -> tuple[Path | None, Path | None]:
    """The layout ``kitchen export --out BASE`` writes: ``adapter/`` (LoRA) or ``model/``
    (full fine-tune), optional ``merged/``; or BASE itself holding weights."""
    main = next((p for p in (base / "adapter", base / "model", base) if _is_export(p)), None)
    merged = base / "merged"
    return main, merged if _is_export(merged) else None


def _check_export_origin(folder: Path, run_root: Path) -> None:
    """Refuse a folder whose ``export.json`` says it was exported from another run."""
    import json

    from kitchen.errors import UsageError

    record = folder / "export.json"
    if not record.is_file():
        return
    try:
        origin = json.loads(record.read_text()).get("run")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(origin, str) and Path(origin).resolve() != run_root.resolve():
        raise UsageError(
            f"--folder {folder} was exported from {origin}, not from {run_root}; "
            "push it with that run directory (its card describes that run)"
        )


def _resolve(root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


# -- facts for the card ------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def data_manifest_hash(
    config: dict[str, Any], manifest: dict[str, Any], root: Path
) -> tuple[str | None, str | None]:
    """``(sha256 hex, what was hashed)`` for the run's training data, or ``(None, None)``.

    A hash the run recorded (``manifest.json`` ``data_manifest_sha256``) wins; else the
    dataset's ``manifest.json`` (next to or inside ``config.dataset``) is hashed; else the
    dataset file itself.
    """
    recorded = manifest.get("data_manifest_sha256")
    if isinstance(recorded, str) and recorded:
        return recorded, str(manifest.get("data_manifest") or "recorded by the run")
    dataset = config.get("dataset") or (config.get("data") or {}).get("path")
    if not isinstance(dataset, str) or "://" in dataset:
        return None, None
    for base in (Path.cwd(), root):
        p = Path(dataset).expanduser()
        p = p if p.is_absolute() else base / p
        if p.is_dir() and (p / "manifest.json").is_file():
            return _sha256_file(p / "manifest.json"), str(p / "manifest.json")
        if p.is_file():
            sibling = p.parent / "manifest.json"
            if sibling.is_file():
                return _sha256_file(sibling), str(sibling)
            return _sha256_file(p), f"{p} (dataset file; no manifest.json)"
    return None, None


def base_model(config: dict[str, Any], folder: Path | None) -> str | None:
    """The base model's hub id: the export's ``kitchen_spec.json`` (``hub_id``), the adapter's
    ``adapter_config.json``, else ``config.model``."""
    import json

    if folder is not None and (folder / "kitchen_spec.json").is_file():
        try:
            spec = json.loads((folder / "kitchen_spec.json").read_text())
        except (OSError, ValueError):
            spec = {}
        hub_id = spec.get("hub_id") if isinstance(spec, dict) else None
        if isinstance(hub_id, str) and _looks_like_hub_id(hub_id):
            return hub_id
    if folder is not None and (folder / "adapter_config.json").is_file():
        try:
            name = json.loads((folder / "adapter_config.json").read_text()).get(
                "base_model_name_or_path"
            )
        except (OSError, ValueError):
            name = None
        if isinstance(name, str) and _looks_like_hub_id(name):
            return name
    model = config.get("model")
    if isinstance(model, dict):
        for key in ("hub_id", "base_model", "name"):
            value = model.get(key)
            if isinstance(value, str) and _looks_like_hub_id(value):
                return value
    return None


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        0 < len(parts) <= 2
        and all(parts)
        and not name.startswith((".", "~"))
        and not Path(name).is_absolute()
        and not name.startswith("noop")
        and not Path(name).exists()
    )


def redact(value: Any) -> Any:
    """Mask values of keys that look like secrets (tokens, passwords, API keys)."""
    if isinstance(value, dict):
        return {
            k: ("***" if any(w in str(k).lower() for w in _SECRET_WORDS) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


# -- the command -------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from kitchen.adapters.hub import HfHubClient, render_model_card, summarize_metrics
    from kitchen.errors import UsageError
    from kitchen.rundir import RunDir

    rd = RunDir.open(args.run_dir)
    config = rd.read_config()
    manifest = rd.read_manifest()

    main: Path | None
    merged: Path | None
    if args.folder:
        main, merged = export_in(Path(args.folder))
        if main is None:
            raise UsageError(
                f"--folder {args.folder} holds no exported adapter or model "
                "(no adapter_config.json or weight files)"
            )
        _check_export_origin(Path(args.folder), rd.root)
    else:
        main, merged = find_export(rd.root, manifest)
    if main is None and merged is None:
        raise UsageError(
            f"{rd.root} has no exported adapter (looked in export/, artifacts/ and the "
            f"manifest); run `kitchen export {args.run_dir} --out DIR` first, then push "
            "again (or pass --folder DIR)"
        )
    if args.include_merged and merged is None:
        raise UsageError(
            f"--include-merged: {rd.root} has no exported merged model (a merged/ folder next "
            "to the adapter); export it with merging first, or drop --include-merged"
        )
    extras: dict[str, Path] = {}
    if main is None:  # only a merged model was exported: it is the repository
        assert merged is not None
        main = merged
    elif args.include_merged and merged is not None:
        extras["merged"] = merged

    kind = "adapter" if (main / "adapter_config.json").is_file() else "model"
    digest, digest_source = data_manifest_hash(config, manifest, rd.root)
    card = render_model_card(
        args.repo_id,
        base_model=args.base_model or base_model(config, main),
        recipe=manifest.get("recipe"),
        config=redact(config),
        metrics=summarize_metrics(rd.metrics()),
        data_manifest_hash=digest,
        data_manifest_source=digest_source,
        run_id=manifest.get("run_id") or rd.root.name,
        adapters=manifest.get("adapters"),
        kind=kind,
        kitchen_version=manifest.get("kitchen_version"),
    )
    if args.dry_run:
        print(card)
        files = [p.relative_to(main).as_posix() for p in sorted(main.rglob("*")) if p.is_file()]
        for sub, folder in extras.items():
            files += [
                f"{sub}/{p.relative_to(folder).as_posix()}"
                for p in sorted(folder.rglob("*"))
                if p.is_file()
            ]
        print(f"would upload {main} to {args.repo_id}: {', '.join(files)}")
        return 0

    hub = HfHubClient(local_root=args.hub_root) if args.hub_root else HfHubClient()
    url = hub.upload(
        str(main),
        args.repo_id,
        commit_message=args.commit_message
        or f"kitchen push {manifest.get('run_id', rd.root.name)}",
        card=card,
        extra_folders=extras,
        private=args.private,
    )
    what = "adapter" if kind == "adapter" else "model"
    plus = " + merged model" if extras else ""
    print(f"pushed {what}{plus} from {main} to {args.repo_id}: {url}")
    return 0

"""External weights: ``save_weights_external`` exports and their signed download URLs.

An export is a sampler-weights directory (HF/peft format safetensors plus config) copied
into ``tinker://RUN/external_weights/NAME``, each file age-encrypted to the caller's
recipients when it gave any (what ``tinker_cookbook.weights.download`` does). Files are
fetched without the API key through URLs signed with an HMAC of the server token and an
expiry, so a URL names exactly one file of one export until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from kitchen.server.storage import CheckpointRefused

URL_PREFIX = "/api/v1/external_weights_files/"
#: How long a signed download URL stays valid.
URL_TTL_S = 3600


def parse_recipients(recipients: Sequence[str]) -> list[object]:
    """age X25519 recipients (``age1...``); a clear error for anything else."""
    if not recipients:
        return []
    try:
        import pyrage
    except ImportError as exc:
        raise ValueError(
            "age-encrypted exports need the pyrage package on the server (pip install pyrage)"
        ) from exc
    out: list[object] = []
    for r in recipients:
        try:
            out.append(pyrage.x25519.Recipient.from_str(r))
        except Exception as exc:  # pyrage raises its own error types
            raise ValueError(f"age_encryption_recipients: {r!r} is not an age recipient") from exc
    return out


def export_dir(source: Path, dest: Path, recipients: Sequence[object]) -> None:
    """Copy ``source``'s files into ``dest`` (``.age``-encrypted to ``recipients`` if any),
    staged next to it and renamed into place, so ``dest`` is whole or absent."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for f in sorted(source.iterdir()):
            if not f.is_file():
                continue
            if recipients:
                import pyrage

                (tmp / f"{f.name}.age").write_bytes(
                    pyrage.encrypt(f.read_bytes(), list(recipients))
                )
            else:
                shutil.copyfile(f, tmp / f.name)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def files_of(directory: Path) -> list[str]:
    return sorted(f.name for f in directory.iterdir() if f.is_file())


def _sig(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def sign(
    secret: bytes, run_id: str, checkpoint_id: str, now: float | None = None
) -> tuple[str, int]:
    """``token/signature`` for an export's files, and the expiry (unix seconds)."""
    expires = int((now or time.time()) + URL_TTL_S)
    payload = f"{run_id}|{checkpoint_id}|{expires}"
    token = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{token}/{_sig(secret, payload)}", expires


def verify(secret: bytes, token: str, signature: str) -> tuple[str, str]:
    """``(run_id, checkpoint_id)`` a signed URL names; ``CheckpointRefused`` otherwise."""
    try:
        payload = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        run_id, checkpoint_id, expires = payload.split("|")
        exp = int(expires)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointRefused("download URL refused: malformed") from exc
    if not hmac.compare_digest(_sig(secret, payload), signature):
        raise CheckpointRefused("download URL refused: bad signature")
    if time.time() > exp:
        raise CheckpointRefused("download URL refused: expired; ask for new URLs")
    return run_id, checkpoint_id

"""Fetch: bring every source of a sources manifest into the BlobStore, with checksums.

- **git** sources are cloned (bare, into a temp dir) and read with ``git archive`` at the
  pinned commit; **url** sources are read over http(s) with ``urllib`` or through any
  fsspec URL (``file://``, ``memory://``, ``s3://`` with its extra, ...). A directory URL
  brings every file under it.
- Each file lands under ``<prefix>/<source>/<path>`` in ``ctx.ports.blob`` and its sha256 is
  recorded. A source pinned with ``sha256:`` whose body differs is rejected as corrupt.
- Network calls are rate limited (``rate_limit`` requests/s) and retried on transient
  failures with exponential backoff and jitter: ``delay_k = min(max_delay, base * 2**k)``
  scaled by a random factor in ``[1 - jitter, 1 + jitter]``.
- Idempotent: a source whose spec is unchanged and whose blobs are still in the store with
  the recorded checksums is not fetched again (git commits and sha256-pinned URLs need no
  network at all; other http URLs are revalidated with ``If-None-Match`` /
  ``If-Modified-Since``, fsspec URLs by their listing's size and checksum info).
- A source that cannot be fetched lands in ``rejected.jsonl`` with the reason (or raises,
  with ``on_error="raise"``); the run stops with a clear error only when no source at all
  could be fetched.

Outputs ``ctx.state[output]`` = path of ``fetch.json``. Its content depends only on what
was fetched (names, commits, paths, sha256s - never URLs, timings or whether a source was
re-used), so a re-run that changes nothing leaves the downstream cache keys unchanged.
URLs and revalidation data go to ``fetch-state.json``, per-run statuses to
``fetch-log.json``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any, Literal, TypeVar

from kitchen.context import Context
from kitchen.data.stages.manifest import (
    DataStage,
    json_hash,
    read_manifest,
    sha256_bytes,
    state_path,
    write_manifest,
    write_records,
)
from kitchen.data.stages.sources import SourceSpec, load_sources
from kitchen.errors import DataError, KitchenError
from kitchen.io import atomic_write_json, read_json

T = TypeVar("T")

#: Where a source came from (in ``fetch-state.json``), kept out of the content manifest so
#: that serving the same bytes from another URL or port leaves downstream cache keys alone.
_ORIGIN = ("url", "fingerprint", "validator")


class FetchError(Exception):
    """A source could not be fetched. ``transient`` errors are retried."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class RateLimiter:
    """At most ``rate`` acquisitions per second across threads (0 = unlimited)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            self._sleep(wait)


def backoff_delays(
    attempts: int, base: float, max_delay: float, jitter: float, rng: random.Random
) -> list[float]:
    """The sleeps between ``attempts`` tries: exponential, capped, with +/- jitter."""
    out = []
    for k in range(max(0, attempts - 1)):
        d = min(max_delay, base * (2**k))
        out.append(max(0.0, d * (1.0 + rng.uniform(-jitter, jitter))))
    return out


def with_retries(
    fn: Callable[[], T],
    *,
    attempts: int,
    delays: list[float],
    sleep: Callable[[float], None],
    on_retry: Callable[[int, FetchError, float], None] | None = None,
) -> tuple[T, int]:
    """Call ``fn`` until it succeeds or fails permanently; returns (result, tries)."""
    for k in range(attempts):
        try:
            return fn(), k + 1
        except FetchError as exc:
            if not exc.transient or k == attempts - 1:
                exc.args = (f"{exc.args[0]} (after {k + 1} attempt(s))",)
                raise
            delay = delays[k] if k < len(delays) else delays[-1] if delays else 0.0
            if on_retry is not None:
                on_retry(k + 1, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")


Files = list[tuple[str, bytes]]


@dataclasses.dataclass(kw_only=True)
class Fetch(DataStage):
    """Fetch the sources named in the manifest at ``ctx.state[input]`` into the BlobStore."""

    input: str = "sources"
    output: str = "fetched"
    prefix: str = "sources"
    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.25
    rate_limit: float = 0.0
    timeout: float = 30.0
    max_file_bytes: int = 2_000_000
    on_error: Literal["reject", "raise"] = "reject"
    #: Fetch is *not* cached by the stage cache by default: the cache key sees only the
    #: sources manifest, not the remote content. Fetch is cheap to re-run instead (pinned
    #: sources are not touched, others are revalidated) and its manifest is content-only,
    #: so stages downstream still hit the cache when nothing changed.
    cacheable: bool = False

    kind = "fetch"

    def __post_init__(self) -> None:
        self._sleep: Callable[[float], None] = time.sleep
        self._rng = random.Random()
        self._limiter: RateLimiter | None = None

    # -- the stage -------------------------------------------------------------------
    def __call__(self, ctx: Context) -> dict[str, Any]:
        specs = load_sources(state_path(ctx, self.input, "sources manifest"))
        blob = ctx.ports.require("blob")
        out = self.dir()
        if self._limiter is None:
            self._limiter = RateLimiter(self.rate_limit, sleep=self._sleep)
        previous = self._previous(out / "fetch.json")
        entries: list[dict[str, Any]] = []
        log: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for spec in specs:
            t0 = time.perf_counter()
            prev = previous.get(spec.name)
            try:
                entry, status, tries = self._fetch_one(spec, prev, blob)
            except FetchError as exc:
                if self.on_error == "raise":
                    raise DataError(
                        f"source {spec.name!r} ({spec.url})", None, None, str(exc)
                    ) from None
                reason = str(exc)
                entry = self._base_entry(spec) | {"error": reason, "files": []}
                status, tries = "failed", None
                rejected.append(
                    {"source": spec.name, "url": spec.url, "kind": spec.kind, "reason": reason}
                )
                ctx.log.warning("fetch_failed", source=spec.name, reason=reason)
            entries.append(entry)
            log.append(
                {
                    "source": spec.name,
                    "status": status,
                    "attempts": tries,
                    "seconds": round(time.perf_counter() - t0, 4),
                }
            )
        files = [f for e in entries for f in e["files"]]
        stats = {
            "sources": len(entries),
            "failed": sum(1 for e in entries if "error" in e),
            "files": len(files),
            "bytes": sum(f["size"] for f in files),
        }
        write_records(out / "rejected.jsonl", rejected)
        atomic_write_json(out / "fetch-log.json", {"sources": log})
        origins = {e["name"]: {k: e[k] for k in _ORIGIN if k in e} for e in entries}
        atomic_write_json(out / "fetch-state.json", {"sources": origins})
        content = [{k: v for k, v in e.items() if k not in _ORIGIN} for e in entries]
        path = out / "fetch.json"
        write_manifest(
            path, "fetch", {"blob_prefix": self.prefix, "sources": content, "stats": stats}
        )
        if not files:
            raise DataError(
                str(path),
                None,
                None,
                f"no source could be fetched ({stats['failed']} failed); see "
                f"{out / 'rejected.jsonl'} for the reasons and fix the sources manifest",
            )
        return {self.output: str(path)}

    # -- helpers -----------------------------------------------------------------------
    def _previous(self, path: Path) -> dict[str, dict[str, Any]]:
        if not path.is_file():
            return {}
        try:
            doc = read_manifest(path, "fetch")
            origins = read_json(path.parent / "fetch-state.json")["sources"]
        except (KitchenError, OSError, ValueError, KeyError):
            return {}  # a damaged previous manifest only costs a re-fetch
        return {
            e["name"]: e | origins.get(e["name"], {})
            for e in doc.get("sources", [])
            if "error" not in e
        }

    def _base_entry(self, spec: SourceSpec) -> dict[str, Any]:
        e: dict[str, Any] = {
            "name": spec.name,
            "kind": spec.kind,
            "url": spec.url,
            "fingerprint": spec.fingerprint(),
        }
        if spec.commit:
            e["commit"] = spec.commit
        return e

    def _intact(self, prev: dict[str, Any], blob: Any) -> bool:
        for f in prev.get("files", []):
            try:
                if blob.info(f["key"]).checksum != "sha256:" + f["sha256"]:
                    return False
            except KeyError:
                return False
        return bool(prev.get("files"))

    def _fetch_one(
        self, spec: SourceSpec, prev: dict[str, Any] | None, blob: Any
    ) -> tuple[dict[str, Any], str, int]:
        entry = self._base_entry(spec)
        same_spec = prev is not None and prev.get("fingerprint") == entry["fingerprint"]
        reusable = same_spec and prev is not None and self._intact(prev, blob)
        pinned = spec.kind == "git" or spec.sha256 is not None
        if reusable and pinned:
            assert prev is not None
            return prev, "unchanged", 0
        validator = prev.get("validator") if reusable and prev is not None else None
        delays = backoff_delays(
            self.attempts, self.backoff, self.max_backoff, self.jitter, self._rng
        )
        result, tries = with_retries(
            lambda: self._download(spec, validator),
            attempts=self.attempts,
            delays=delays,
            sleep=self._sleep,
        )
        files, new_validator = result
        if files is None:  # not modified since the validator
            assert prev is not None
            return prev, "unchanged", tries
        if spec.sha256 is not None:
            if len(files) != 1:
                raise FetchError(
                    f"'sha256' pins a single file but the source has {len(files)} files",
                    transient=False,
                )
            got = sha256_bytes(files[0][1])
            if got != spec.sha256:
                raise FetchError(
                    f"corrupt source: sha256 {got} does not match the pinned {spec.sha256}; "
                    "update the pin if the change is intended",
                    transient=False,
                )
        records = []
        skipped = []
        for rel, data in sorted(files):
            if not spec.wants(rel):
                continue
            if len(data) > self.max_file_bytes:
                skipped.append({"path": rel, "size": len(data), "reason": "max_file_bytes"})
                continue
            key = f"{self.prefix}/{spec.name}/{rel}"
            digest = sha256_bytes(data)
            if not _has(blob, key, digest):
                blob.put(key, data)
            records.append({"path": rel, "key": key, "sha256": digest, "size": len(data)})
        if not records:
            raise FetchError(
                "source has no files matching include/exclude; check the globs", transient=False
            )
        entry["files"] = records
        if skipped:
            entry["skipped"] = skipped
        if new_validator:
            entry["validator"] = new_validator
        entry["content"] = json_hash([(r["path"], r["sha256"]) for r in records])
        return entry, "fetched", tries

    def _download(
        self, spec: SourceSpec, validator: dict[str, Any] | None
    ) -> tuple[Files | None, dict[str, Any] | None]:
        assert self._limiter is not None
        self._limiter.acquire()
        if spec.kind == "git":
            return _git_files(spec, self.timeout), None
        scheme = urllib.parse.urlsplit(spec.url).scheme
        if scheme in ("http", "https"):
            return _http_file(spec, validator, self.timeout)
        return _fsspec_files(spec, validator)


def _has(blob: Any, key: str, digest: str) -> bool:
    try:
        return bool(blob.info(key).checksum == "sha256:" + digest)
    except KeyError:
        return False


def _git(args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="echo")
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, timeout=timeout, env=env, check=False
        )
    except FileNotFoundError:
        raise FetchError(
            "git is not installed; install git to fetch git sources", transient=False
        ) from None
    except subprocess.TimeoutExpired:
        raise FetchError(f"git {args[0]} timed out after {timeout}s", transient=True) from None


def _git_files(spec: SourceSpec, timeout: float) -> Files:
    with tempfile.TemporaryDirectory(prefix="kitchen-git-") as tmp:
        repo = str(Path(tmp) / "repo.git")
        r = _git(["clone", "--bare", "--quiet", spec.url, repo], timeout)
        if r.returncode != 0:
            msg = r.stderr.decode(errors="replace").strip().splitlines()
            text = msg[-1] if msg else f"exit {r.returncode}"
            permanent = any(s in text for s in ("does not exist", "not found", "not appear to be"))
            raise FetchError(f"git clone {spec.url} failed: {text}", transient=not permanent)
        r = _git(["--git-dir", repo, "archive", "--format=tar", str(spec.commit)], timeout)
        if r.returncode != 0:
            raise FetchError(
                f"commit {spec.commit} not found in {spec.url}; check the pinned commit",
                transient=False,
            )
    out: Files = []
    with tarfile.open(fileobj=BytesIO(r.stdout)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                fh = tar.extractfile(member)
                if fh is not None:
                    out.append((member.name, fh.read()))
    return out


def _http_file(
    spec: SourceSpec, validator: dict[str, Any] | None, timeout: float
) -> tuple[Files | None, dict[str, Any] | None]:
    req = urllib.request.Request(spec.url, headers={"User-Agent": "kitchen-fetch"})
    if validator:
        if validator.get("etag"):
            req.add_header("If-None-Match", validator["etag"])
        if validator.get("last_modified"):
            req.add_header("If-Modified-Since", validator["last_modified"])
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
            headers = resp.headers
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return None, validator
        transient = exc.code == 429 or exc.code >= 500
        raise FetchError(
            f"HTTP {exc.code} {exc.reason} from {spec.url}", transient=transient
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot reach {spec.url}: {reason}", transient=True) from None
    name = Path(urllib.parse.urlsplit(spec.url).path).name or "index.html"
    new = {
        k: v
        for k, v in (("etag", headers.get("ETag")), ("last_modified", headers.get("Last-Modified")))
        if v
    }
    return [(name, data)], new or None


def _fsspec_files(
    spec: SourceSpec, validator: dict[str, Any] | None
) -> tuple[Files | None, dict[str, Any] | None]:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(spec.url)
    except (ImportError, ValueError) as exc:
        raise FetchError(f"unsupported URL {spec.url}: {exc}", transient=False) from None
    try:
        if fs.isdir(root):
            paths = sorted(fs.find(root))
            rels = [p[len(root.rstrip("/")) + 1 :] if p.startswith(root) else p for p in paths]
        elif fs.isfile(root):
            paths, rels = [root], [Path(root).name]
        else:
            raise FetchError(f"{spec.url} does not exist; fix the url", transient=False)
        listing = [(r, fs.size(p), str(fs.checksum(p))) for r, p in zip(rels, paths, strict=True)]
        signature = {"listing": json_hash(listing)}
        if validator == signature:
            return None, validator
        files = [(r, fs.cat_file(p)) for r, p in zip(rels, paths, strict=True)]
    except FetchError:
        raise
    except FileNotFoundError:
        raise FetchError(f"{spec.url} does not exist; fix the url", transient=False) from None
    except OSError as exc:
        raise FetchError(f"cannot read {spec.url}: {exc}", transient=True) from None
    return files, signature

"""Fetch: git at a pinned commit, http and file:// sources through the BlobStore."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from kitchen.context import Context
from kitchen.data.stages import Fetch, RateLimiter, backoff_delays, load_sources
from kitchen.data.stages.fetch import FetchError, with_retries
from kitchen.errors import DataError
from kitchen.io import read_jsonl
from kitchen.ports.bundle import Ports
from tests.data.helpers import DirBlobStore, git, http_server, make_git_repo


def write_sources(path: Path, sources: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "sources": sources}))
    return path


def ctx_for(tmp: Path, sources: Path) -> tuple[Context, DirBlobStore]:
    blob = DirBlobStore(tmp / "blobs")
    return Context(ports=Ports(blob=blob), state={"sources": str(sources)}), blob


def fast(fetch: Fetch) -> Fetch:
    fetch._sleep = lambda s: None
    return fetch


def test_git_http_and_file_sources_land_in_the_blob_store_with_checksums(tmp_path: Path) -> None:
    commit = make_git_repo(tmp_path / "repo", {"pkg/a.py": "x = 1\n", "README.md": "# r\n"})
    # a later commit must not leak into the pinned fetch
    (tmp_path / "repo" / "pkg" / "b.py").write_text("y = 2\n")
    git(tmp_path / "repo", "add", "-A")
    git(tmp_path / "repo", "commit", "-q", "-m", "later")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "guide.md").write_text("# Guide\nhello\n")
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "sub" / "x.md").write_text("# X\n")
    with http_server(tmp_path / "web") as (base, _):
        src = write_sources(
            tmp_path / "sources.yaml",
            [
                {
                    "name": "code",
                    "kind": "git",
                    "url": "repo",
                    "commit": commit,
                    "include": ["**/*.py"],
                },
                {"name": "guide", "kind": "url", "url": f"{base}/guide.md"},
                {"name": "docs", "kind": "url", "url": (tmp_path / "docs").as_uri()},
            ],
        )
        ctx, blob = ctx_for(tmp_path, src)
        out = Fetch(out_dir=str(tmp_path / "fetch"))(ctx)
    manifest = json.loads(Path(out["fetched"]).read_text())
    assert manifest["kind"] == "kitchen.data.fetch" and manifest["schema_version"] == 1
    files = {s["name"]: [f["path"] for f in s["files"]] for s in manifest["sources"]}
    assert files == {"code": ["pkg/a.py"], "guide": ["guide.md"], "docs": ["sub/x.md"]}
    for s in manifest["sources"]:
        for f in s["files"]:
            assert blob.info(f["key"]).checksum == "sha256:" + f["sha256"]
    assert blob.get("sources/code/pkg/a.py") == b"x = 1\n"
    assert manifest["stats"] == {"sources": 3, "failed": 0, "files": 3, "bytes": 24}


def test_rerun_is_idempotent_and_revalidates_http(tmp_path: Path) -> None:
    commit = make_git_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "g.md").write_text("# G\n")
    with http_server(tmp_path / "web") as (base, hits):
        src = write_sources(
            tmp_path / "s.yaml",
            [
                {"name": "code", "kind": "git", "url": str(tmp_path / "repo"), "commit": commit},
                {"name": "g", "kind": "url", "url": f"{base}/g.md"},
            ],
        )
        ctx, blob = ctx_for(tmp_path, src)
        fetch = Fetch(out_dir=str(tmp_path / "f"))
        first = Path(fetch(ctx)["fetched"]).read_bytes()
        puts = len(blob.puts)
        second = Path(fetch(ctx)["fetched"]).read_bytes()
        log = json.loads((tmp_path / "f" / "fetch-log.json").read_text())
    assert first == second  # a content-only manifest: downstream cache keys do not move
    assert len(blob.puts) == puts == 2  # nothing rewritten
    assert [s["status"] for s in log["sources"]] == ["unchanged", "unchanged"]
    assert log["sources"][0]["attempts"] == 0  # pinned git commit: no network at all
    assert len(hits) == 2  # http was revalidated (304), not downloaded again


def test_transient_http_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "g.md").write_text("# G\n")
    with http_server(tmp_path / "web", fail_first=2) as (base, hits):
        src = write_sources(
            tmp_path / "s.yaml", [{"name": "g", "kind": "url", "url": f"{base}/g.md"}]
        )
        ctx, _ = ctx_for(tmp_path, src)
        fetch = Fetch(out_dir=str(tmp_path / "f"), backoff=0.1, jitter=0.0)
        slept: list[float] = []
        fetch._sleep = slept.append
        fetch(ctx)
    assert len(hits) == 3
    assert slept == [0.1, 0.2]  # exponential
    log = json.loads((tmp_path / "f" / "fetch-log.json").read_text())
    assert log["sources"][0]["attempts"] == 3


def test_backoff_is_capped_and_jittered() -> None:
    d = backoff_delays(6, 1.0, 5.0, 0.5, random.Random(0))
    assert len(d) == 5
    for k, x in enumerate(d):
        nominal = min(5.0, 2**k)
        assert 0.5 * nominal <= x <= 1.5 * nominal
    assert backoff_delays(4, 1.0, 8.0, 0.0, random.Random(0)) == [1.0, 2.0, 4.0]


def test_permanent_errors_are_not_retried() -> None:
    calls = []

    def boom() -> None:
        calls.append(1)
        raise FetchError("404", transient=False)

    with pytest.raises(FetchError, match=r"after 1 attempt"):
        with_retries(boom, attempts=5, delays=[0.0] * 4, sleep=lambda s: None)
    assert len(calls) == 1


def test_rate_limiter_spaces_requests() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    rl = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        rl.acquire()
    assert slept == [0.25, 0.25, 0.25]


def test_bad_sources_land_in_rejected_jsonl_and_the_run_goes_on(tmp_path: Path) -> None:
    commit = make_git_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "g.md").write_text("# G\n")
    with http_server(tmp_path / "web") as (base, _):
        src = write_sources(
            tmp_path / "s.yaml",
            [
                {"name": "ok", "kind": "git", "url": str(tmp_path / "repo"), "commit": commit},
                {
                    "name": "nocommit",
                    "kind": "git",
                    "url": str(tmp_path / "repo"),
                    "commit": "0" * 40,
                },
                {"name": "missing", "kind": "url", "url": f"{base}/nope.md"},
                {"name": "corrupt", "kind": "url", "url": f"{base}/g.md", "sha256": "a" * 64},
                {"name": "gone", "kind": "url", "url": (tmp_path / "nowhere").as_uri()},
                {
                    "name": "norepo",
                    "kind": "git",
                    "url": str(tmp_path / "nope.git"),
                    "commit": commit,
                },
                {"name": "down", "kind": "url", "url": "http://127.0.0.1:9/x.md"},
            ],
        )
        ctx, _ = ctx_for(tmp_path, src)
        fast(Fetch(out_dir=str(tmp_path / "f"), attempts=2))(ctx)
    rejected = {r["source"]: r["reason"] for r in read_jsonl(tmp_path / "f" / "rejected.jsonl")}
    assert set(rejected) == {"nocommit", "missing", "corrupt", "gone", "norepo", "down"}
    assert "check the pinned commit" in rejected["nocommit"]
    assert "HTTP 404" in rejected["missing"] and "after 1 attempt" in rejected["missing"]
    assert "corrupt source: sha256" in rejected["corrupt"]
    assert "does not exist" in rejected["gone"]
    assert "git clone" in rejected["norepo"]
    assert "cannot reach" in rejected["down"] and "after 2 attempt" in rejected["down"]


def test_all_sources_failing_is_one_clear_error(tmp_path: Path) -> None:
    src = write_sources(
        tmp_path / "s.yaml", [{"name": "gone", "kind": "url", "url": (tmp_path / "x").as_uri()}]
    )
    ctx, _ = ctx_for(tmp_path, src)
    with pytest.raises(
        DataError, match=r"no source could be fetched \(1 failed\); see .*rejected.jsonl"
    ):
        Fetch(out_dir=str(tmp_path / "f"))(ctx)
    with pytest.raises(DataError, match=r"source 'gone'.*does not exist"):
        Fetch(out_dir=str(tmp_path / "f"), on_error="raise")(ctx)


@pytest.mark.parametrize(
    ("sources", "match"),
    [
        (
            [{"name": "a", "kind": "git", "url": "r"}],
            r"s.yaml field 'sources.0'.*'commit' is required",
        ),
        (
            [{"name": "a", "kind": "git", "url": "r", "commit": "main"}],
            r"field 'sources.0.commit'.*not a branch",
        ),
        ([{"name": "a b", "kind": "url", "url": "x"}], r"field 'sources.0.name'"),
        ([{"name": "a", "kind": "ftp", "url": "x"}], r"field 'sources.0.kind'"),
        ([{"name": "a", "kind": "url", "url": "x", "extra": 1}], r"field 'sources.0.extra'"),
        ([{"name": "a", "kind": "url", "url": "x"}] * 2, r"duplicate source name 'a'"),
        ([], r"field 'sources'"),
    ],
)
def test_bad_manifests_name_the_file_and_field(tmp_path: Path, sources: list, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_sources(write_sources(tmp_path / "s.yaml", sources))


def test_unparseable_manifest(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("sources: [unclosed")
    with pytest.raises(DataError, match=r"s.yaml: cannot parse"):
        load_sources(tmp_path / "s.yaml")
    with pytest.raises(DataError, match=r"not found"):
        load_sources(tmp_path / "none.yaml")

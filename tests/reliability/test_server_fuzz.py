"""`kitchen serve` answers every malformed request with a 4xx JSON detail, never a 5xx, and
keeps serving.

A hypothesis fuzzer replays every route: JSON bodies are generated field by field from the
route's schema (``kitchen.server.schemas``), each field either a value of its declared type
(often out of bounds) or any JSON value; protobuf bodies are valid-shaped
``ForwardBackwardRequest`` messages with inconsistent byte lengths, shapes and sparse
indices. The app runs in process with ``raise_server_exceptions=False``, so an unhandled
exception shows up as the 500 a client would see.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("tinker")

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from tinker.proto import tinker_public_pb2 as pb

from kitchen.server import schemas as sc
from kitchen.server.app import ServerConfig, create_app
from kitchen.server.backends import load_backend

TOKEN = "tml-fuzz-token-0000"
HEADERS = {"X-API-Key": TOKEN}
MODEL = "noop-tiny"

JSON_ROUTES: dict[str, type[BaseModel]] = {
    "/api/v1/session_heartbeat": sc.SessionBody,
    "/api/v1/retrieve_future": sc.RequestIdBody,
    "/api/v1/create_model": sc.CreateModelBody,
    "/api/v1/get_info": sc.ModelIdBody,
    "/api/v1/unload_model": sc.ModelIdBody,
    "/api/v1/optim_step": sc.OptimStepBody,
    "/api/v1/save_weights": sc.SaveWeightsBody,
    "/api/v1/save_weights_for_sampler": sc.SaveForSamplerBody,
    "/api/v1/load_weights": sc.LoadWeightsBody,
    "/api/v1/create_sampling_session": sc.CreateSamplerBody,
    "/api/v1/join_sampling_session": sc.SamplerIdBody,
    "/api/v1/asample": sc.SampleBody,
    "/api/v1/weights_info": sc.TinkerPathBody,
    "/api/v1/save_weights_external": sc.SaveWeightsExternalBody,
}
#: Routes whose input is the path/query (fuzzed in test_path_and_query_routes...) or a
#: protobuf body (test_forward_backward_protobuf...).
OTHER_ROUTES = {
    "/api/v1/healthz",
    "/api/v1/forward_backward",
    "/api/v1/sessions/{session_id}/finish",
    "/api/v1/training_runs",
    "/api/v1/training_runs/{run_id}",
    "/api/v1/training_runs/{model_id}/checkpoints",
    "/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id:path}",
    "/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id:path}/ttl",
    "/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id:path}/external_weights_urls",
    "/api/v1/checkpoints",
    "/api/v1/samplers/{sampler_id}",
}
NO_BODY_ROUTES = [
    ("POST", "/api/v1/client/config"),
    ("POST", "/api/v1/client/dynamic_config"),
    ("GET", "/api/v1/get_server_capabilities"),
    ("POST", "/api/v1/telemetry"),
    ("POST", "/api/v1/create_session"),
    ("POST", "/api/v1/cancel_future"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A served noop model with a session, a trained model and a sampler to aim ids at."""
    data = tmp_path_factory.mktemp("serve")
    backend = load_backend("noop", model_spec='{"vocab_size": 64}', model_name=MODEL)
    config = ServerConfig(token=TOKEN, data_dir=str(Path(data)), poll_s=0.5)
    with TestClient(create_app(backend, config), raise_server_exceptions=False) as client:
        sid = client.post("/api/v1/create_session", headers=HEADERS, json={}).json()["session_id"]
        made = client.post(
            "/api/v1/create_model",
            headers=HEADERS,
            json={"session_id": sid, "base_model": MODEL, "model_seq_id": 0},
        ).json()
        sampler = client.post(
            "/api/v1/create_sampling_session",
            headers=HEADERS,
            json={"session_id": sid, "sampling_session_seq_id": 0, "base_model": MODEL},
        ).json()
        yield {
            "client": client,
            "ids": [sid, made["model_id"], made["request_id"], sampler["sampling_session_id"]],
        }


# -- strategies derived from the schemas ---------------------------------------------------
JSON_ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
BIG_INTS = st.sampled_from([-1, 0, 1, 2**31, 2**63, 10**12, 10**30])


def typed(annotation: Any, ids: list[str]) -> st.SearchStrategy[Any]:
    """Values of ``annotation``'s type, including out-of-range ones (bounds are what the
    server must check)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return typed(args[0], ids)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([typed(a, ids) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(typed(args[0], ids), max_size=5)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), typed(args[1], ids), max_size=4)
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return BIG_INTS | st.integers(-5, 100)
    if annotation is float:
        return st.sampled_from([0.0, -1.0, 1e308, 0.5, 1e-12, 1e3])
    if annotation is str:
        return st.sampled_from(ids) | st.sampled_from([MODEL, "", "\x00", "../../etc", "x" * 600])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return body_for(annotation, ids)
    return JSON_ANY


def body_for(model: type[BaseModel], ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        name: typed(info.annotation, ids) | JSON_ANY for name, info in model.model_fields.items()
    }
    return st.fixed_dictionaries({}, optional=fields)  # type: ignore[arg-type]


RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.just(b"[" * 5000 + b"]" * 5000),
    st.just(b'{"a":' * 3000 + b"1" + b"}" * 3000),
    st.just(b"\xff\xfe{\x00}\x00"),
    JSON_ANY.map(lambda v: json.dumps(v).encode()),
)


def _assert_clean(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert isinstance(response.json().get("detail"), str)


FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("route", sorted(JSON_ROUTES))
def test_json_routes_never_answer_5xx(live: dict[str, Any], route: str) -> None:
    client = live["client"]

    @FUZZ
    @given(body=body_for(JSON_ROUTES[route], live["ids"]))
    def fuzz(body: dict[str, Any]) -> None:
        _assert_clean(client.post(route, headers=HEADERS, json=body))

    fuzz()


@pytest.mark.parametrize("route", sorted(JSON_ROUTES))
def test_raw_garbage_never_answers_5xx(live: dict[str, Any], route: str) -> None:
    client = live["client"]

    @settings(max_examples=10, deadline=None)
    @given(raw=RAW_BODIES)
    def fuzz(raw: bytes) -> None:
        r = client.post(route, headers={**HEADERS, "content-type": "application/json"}, content=raw)
        _assert_clean(r)
        assert r.status_code in (400, 404, 409, 410, 413, 422), r.text

    fuzz()


def test_every_route_is_fuzzed(live: dict[str, Any]) -> None:
    """A route added to the app without a place in this file fails here (so it gets one)."""
    app = live["client"].app
    paths = {getattr(r, "path", "") for r in app.routes} - {""}
    covered = set(JSON_ROUTES) | {p for _, p in NO_BODY_ROUTES} | OTHER_ROUTES
    missing = {p for p in paths - covered if not p.startswith("/api/v1/external_weights_files/")}
    assert not missing, f"add these routes to the fuzz test: {sorted(missing)}"


def test_no_body_routes_ignore_garbage(live: dict[str, Any]) -> None:
    client = live["client"]
    for method, route in NO_BODY_ROUTES:
        r = client.request(method, route, headers=HEADERS, content=b"\xff" * 100)
        _assert_clean(r)


@st.composite
def fwd_bwd(draw: st.DrawFn, model_id: str) -> bytes:
    msg = pb.ForwardBackwardRequest()
    msg.model_id = draw(st.sampled_from([model_id, "", "nope"]))
    msg.seq_id = draw(st.integers(0, 3))
    msg.loss_fn = draw(st.sampled_from(["cross_entropy", "ppo", "bogus", ""]))
    for _ in range(draw(st.integers(0, 2))):
        d = msg.data.add()
        chunk = d.model_input.add()
        chunk.encoded_text.tokens = draw(st.binary(max_size=23))  # any length, not only 4k
        for key in draw(st.lists(st.sampled_from(["target_tokens", "weights", "x"]), max_size=2)):
            t = d.loss_fn_inputs[key]
            t.dtype = draw(st.sampled_from([pb.DTYPE_FLOAT32, pb.DTYPE_INT64, pb.DTYPE_INT32, 99]))
            t.shape.extend(draw(st.lists(st.sampled_from([0, 1, 3, 2**20, 2**40]), max_size=3)))
            if draw(st.booleans()):
                t.dense = draw(st.binary(max_size=40))
            else:
                t.sparse_csr.values = draw(st.binary(max_size=24))
                t.sparse_csr.crow_indices = draw(st.binary(max_size=32))
                t.sparse_csr.col_indices = draw(st.binary(max_size=32))
    return bytes(msg.SerializeToString())


def test_forward_backward_protobuf_never_answers_5xx(live: dict[str, Any]) -> None:
    client = live["client"]
    headers = {**HEADERS, "content-type": "application/x-protobuf"}

    @settings(max_examples=120, deadline=None)
    @given(raw=fwd_bwd(live["ids"][1]) | st.binary(max_size=64))
    def fuzz(raw: bytes) -> None:
        _assert_clean(client.post("/api/v1/forward_backward", headers=headers, content=raw))

    fuzz()


def test_sparse_tensor_asking_for_a_huge_allocation_is_refused(live: dict[str, Any]) -> None:
    msg = pb.ForwardBackwardRequest(model_id=live["ids"][1], loss_fn="cross_entropy")
    t = msg.data.add().loss_fn_inputs["weights"]
    t.dtype = pb.DTYPE_FLOAT32
    t.shape.extend([2**20, 2**20])  # 4 TiB dense
    t.sparse_csr.crow_indices = b"\x00" * 8
    r = live["client"].post(
        "/api/v1/forward_backward",
        headers={**HEADERS, "content-type": "application/x-protobuf"},
        content=msg.SerializeToString(),
    )
    assert r.status_code == 400 and "limit" in r.json()["detail"]


def test_caps_duplicates_and_types(live: dict[str, Any]) -> None:
    client = live["client"]
    sid, _model_id, _req, sampler = live["ids"]
    prompt = {"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]}
    for body, field in [
        ({"num_samples": 10**9}, "num_samples"),
        ({"sampling_params": {"max_tokens": 10**9}}, "max_tokens"),
    ]:
        r = client.post(
            "/api/v1/asample",
            headers=HEADERS,
            json={"sampling_session_id": sampler, "prompt": prompt, **body},
        )
        assert r.status_code == 400 and field in r.json()["detail"], r.text
    dup = {"session_id": sid, "base_model": MODEL, "model_seq_id": 0}
    r = client.post("/api/v1/create_model", headers=HEADERS, json=dup)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    dup_s = {"session_id": sid, "sampling_session_seq_id": 0, "base_model": MODEL}
    assert (
        client.post("/api/v1/create_sampling_session", headers=HEADERS, json=dup_s).status_code
        == 409
    )
    r = client.post("/api/v1/create_model", headers=HEADERS, json={**dup, "model_seq_id": "7"})
    assert r.status_code == 400 and "model_seq_id" in r.json()["detail"]
    r = client.post("/api/v1/optim_step", headers=HEADERS, json={"model_id": [1], "seq_id": 1})
    assert r.status_code == 400 and "model_id" in r.json()["detail"]
    deep = b'{"session_id":' + b"[" * 100 + b"]" * 100 + b"}"
    r = client.post("/api/v1/session_heartbeat", headers=HEADERS, content=deep)
    assert r.status_code == 413 and "nests deeper" in r.json()["detail"]


PATH_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="?#"), max_size=30
) | st.sampled_from(["..", "../../etc/passwd", "%2e%2e", "x" * 600])


def test_path_and_query_routes_never_answer_5xx(live: dict[str, Any]) -> None:
    client = live["client"]

    @settings(max_examples=60, deadline=None)
    @given(a=PATH_TEXT | st.sampled_from(live["ids"]), b=PATH_TEXT, q=JSON_ANY)
    def fuzz(a: str, b: str, q: Any) -> None:
        from urllib.parse import quote

        qa, qb = quote(a, safe=""), quote(b, safe="")
        for method, url in [
            ("GET", f"/api/v1/training_runs/{qa}/checkpoints"),
            ("GET", f"/api/v1/training_runs/{qa}"),
            ("GET", f"/api/v1/training_runs?limit={quote(str(q))}&offset={qb}"),
            ("DELETE", f"/api/v1/training_runs/{qa}/checkpoints/{qb}"),
            ("PUT", f"/api/v1/training_runs/{qa}/checkpoints/{qb}/ttl"),
            ("GET", f"/api/v1/checkpoints?limit={quote(str(q))}&offset={qb}"),
            ("GET", f"/api/v1/training_runs/{qa}/checkpoints/{qb}/external_weights_urls"),
            ("GET", f"/api/v1/external_weights_files/{qa}/{qb}/x"),
            ("GET", f"/api/v1/samplers/{qa}"),
            ("GET", f"/api/v1/checkpoints?limit={quote(str(q))}&offset={qb}"),
            ("PUT", f"/api/v1/training_runs/{qa}/checkpoints/{qb}/ttl"),
            ("GET", f"/api/v1/training_runs/{qa}/checkpoints/{qb}/external_weights_urls"),
            ("GET", f"/api/v1/external_weights_files/{qa}/{qb}/x"),
            ("POST", f"/api/v1/sessions/{qa}/finish"),
        ]:
            _assert_clean(client.request(method, url, headers=HEADERS))

    fuzz()


def test_still_serving_after_the_fuzz(live: dict[str, Any]) -> None:
    """Runs last in this module (pytest keeps file order): the server still answers."""
    client = live["client"]
    assert client.get("/api/v1/healthz").json() == {"status": "ok"}
    r = client.post("/api/v1/create_session", headers=HEADERS, json={})
    assert r.status_code == 200 and r.json()["session_id"]

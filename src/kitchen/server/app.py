"""The HTTP API of ``kitchen serve``: the part of the Tinker API the pinned SDK uses.

See ``docs/remote.md`` for the endpoint list. Handlers never block the event loop on
model work: training requests go to per-model dispatcher threads, sampling to a small
pool, and results come back through the futures queue (``/api/v1/retrieve_future``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from kitchen.ports.types import AdamParams, SampleResponse
from kitchen.server import exports, runs, wire
from kitchen.server import schemas as sc
from kitchen.server.backends import Backend
from kitchen.server.schemas import ServerLimits
from kitchen.server.security import GuardMiddleware
from kitchen.server.state import PROTOBUF, Conflict, Job, NotFound, ServerState, watch
from kitchen.server.storage import CheckpointRefused, CheckpointStore, check_name

log = logging.getLogger("kitchen.server")

#: The SDK's own per-chunk cap; the server lowers it to fit its body limit.
SDK_MAX_CHUNK_BYTES = 5_000_000


@dataclass
class ServerConfig:
    token: str
    data_dir: str
    max_body_bytes: int = 64 * 1024 * 1024
    #: How long one ``retrieve_future`` call waits for a result before "try again".
    poll_s: float = 20.0
    session_ttl_s: float = 600.0
    #: How long a model waits for a missing seq_id before skipping it.
    seq_gap_s: float = 30.0
    backend_name: str = "custom"
    use_pyqwest_transport: bool = False
    #: Per-request caps (num_samples, max_tokens, datums, tensor sizes, JSON depth).
    limits: ServerLimits = field(default_factory=ServerLimits)


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


M = TypeVar("M", bound=BaseModel)


def _future(job: Job, **extra: Any) -> dict[str, Any]:
    return {"request_id": job.request_id, **extra}


def _ok(payload: Any) -> tuple[Any, str]:
    return payload, "application/json"


def create_app(backend: Backend, config: ServerConfig) -> FastAPI:
    store = CheckpointStore(config.data_dir)
    holder: dict[str, ServerState] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        holder["state"] = ServerState(
            backend,
            store,
            loop,
            session_ttl_s=config.session_ttl_s,
            backend_name=config.backend_name,
            seq_gap_s=config.seq_gap_s,
        )

        async def janitor() -> None:
            while True:
                await asyncio.sleep(30)
                st = holder["state"]
                st.futures.sweep()
                await run_in_threadpool(st.expire_sessions)

        task = asyncio.create_task(janitor())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(
        title="kitchen serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(GuardMiddleware, token=config.token, max_body_bytes=config.max_body_bytes)

    def st() -> ServerState:
        return holder["state"]

    async def body_of(request: Request, model: type[M]) -> M:
        """The request's JSON body validated against ``model`` (400/413 if it is not)."""
        return sc.validate_body(model, sc.parse_json(await request.body(), config.limits))

    @app.exception_handler(sc.BadBody)
    async def _bad_body(_: Request, exc: sc.BadBody) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_params(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in err.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {err.get('msg')}"}, status_code=400)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(CheckpointRefused)
    async def _refused(_: Request, exc: CheckpointRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    # -- service -------------------------------------------------------------------

    @app.get("/api/v1/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/client/config")
    async def client_config() -> dict[str, Any]:
        return {
            "pjwt_auth_enabled": False,
            "credential_default_source": "api_key",
            "use_pyqwest_transport": config.use_pyqwest_transport,
            "proto_compress_fwdbwd": False,
            "parallel_fwdbwd_chunks": True,
            "fwdbwd_max_chunk_bytes_count": max(
                1024, min(SDK_MAX_CHUNK_BYTES, config.max_body_bytes // 2)
            ),
            "sample_use_retrieve_futures": False,
            "custom_loss_server_side": False,
            "sample_join_sampling_session": False,
            "sample_no_retries": False,
        }

    @app.post("/api/v1/client/dynamic_config")
    async def client_dynamic_config() -> dict[str, Any]:
        return {"refresh_interval_sec": 300, "sample_cancel_enabled": False}

    @app.get("/api/v1/get_server_capabilities")
    async def capabilities() -> dict[str, Any]:
        return {
            "supported_models": [
                {"model_name": m, "trainable": True, "sampleable": True}
                for m in backend.model_names()
            ]
        }

    @app.post("/api/v1/telemetry")
    async def telemetry() -> dict[str, str]:
        return {"status": "accepted"}  # accepted and dropped: nothing leaves this machine

    @app.post("/api/v1/create_session")
    async def create_session() -> dict[str, Any]:
        s = st().create_session()
        return {"type": "create_session", "session_id": s.session_id}

    @app.post("/api/v1/session_heartbeat")
    async def heartbeat(request: Request) -> Any:
        body = await body_of(request, sc.SessionBody)
        try:
            st().session(body.session_id)
        except NotFound as exc:
            # 410 tells the SDK to stop heartbeating a session this server does not have.
            return JSONResponse({"detail": str(exc)}, status_code=410)
        return {"type": "session_heartbeat"}

    @app.post("/api/v1/sessions/{session_id}/finish")
    async def finish(session_id: str) -> Response:
        await run_in_threadpool(st().finish_session, session_id)
        return Response(status_code=200)

    @app.post("/api/v1/cancel_future")
    async def cancel_future() -> Response:
        return Response(status_code=200)

    # -- futures -------------------------------------------------------------------

    @app.post("/api/v1/retrieve_future")
    async def retrieve_future(request: Request) -> Response:
        body = await body_of(request, sc.RequestIdBody)
        job = st().futures.get(body.request_id)
        if not job.done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.event.wait(), timeout=config.poll_s)
        if not job.done:
            return JSONResponse(
                {"type": "try_again", "request_id": job.request_id, "queue_state": "active"}
            )
        if job.error is not None:
            return JSONResponse({"error": job.error, "category": job.category})
        if isinstance(job.payload, bytes):
            return Response(job.payload, media_type=job.content_type)
        return JSONResponse(job.payload)

    # -- models --------------------------------------------------------------------

    @app.post("/api/v1/create_model")
    async def create_model(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.CreateModelBody)
        session = st().session(body.session_id)
        base_model = body.base_model
        lora = body.lora_config or sc.LoraBody()
        optimizer = (body.optimizer_config or sc.OptimizerBody()).type
        entry = st().add_model(
            session, body.model_seq_id, base_model, lora.rank, lora.seed, body.user_metadata
        )
        job = st().futures.new("create_model")
        if optimizer != "adamw":
            st().futures.fail(
                job, f"optimizer {optimizer!r} is not supported; kitchen serve runs AdamW"
            )
            entry.ready.set()
            return _future(job, model_id=entry.model_id)
        try:
            check = getattr(backend, "check_model", None)
            if check is not None:
                check(base_model)
        except ValueError as exc:
            st().futures.fail(job, exc)
            entry.failed = str(exc)
            entry.ready.set()
            return _future(job, model_id=entry.model_id)
        st().init_model(
            entry, job, None, lambda _: {"model_id": entry.model_id, "type": "create_model"}
        )
        return _future(job, model_id=entry.model_id)

    @app.post("/api/v1/get_info")
    async def get_info(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.ModelIdBody)
        entry = st().model(body.model_id)
        try:
            client = await run_in_threadpool(entry.wait_ready)
        except RuntimeError as exc:  # the model failed to initialise: say why
            raise ApiError(400, str(exc)) from exc
        info = client.get_info()
        md = info.model_data
        return {
            "type": "get_info",
            "model_id": entry.model_id,
            "model_data": {
                "arch": md.arch,
                "model_name": entry.base_model,
                "tokenizer_id": md.tokenizer_id,
            },
            "is_lora": info.is_lora,
            "lora_rank": info.lora_rank,
            "model_name": entry.base_model,
        }

    @app.post("/api/v1/unload_model")
    async def unload_model(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.ModelIdBody)
        entry = st().model(body.model_id)
        job = st().futures.new("unload_model")
        st().futures.complete(job, {"model_id": entry.model_id, "type": "unload_model"})
        return _future(job, model_id=entry.model_id)

    # -- training ------------------------------------------------------------------

    @app.post("/api/v1/forward_backward")
    async def forward_backward(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "")
        if PROTOBUF not in ctype:
            raise ApiError(415, f"forward_backward expects {PROTOBUF}, got {ctype!r}")
        raw = await request.body()
        try:
            call = wire.decode_forward_backward(raw, config.limits)
        except wire.WireError as exc:
            raise ApiError(400, str(exc)) from exc
        entry = st().model(call.model_id)
        name = "forward" if call.forward_only else "forward_backward"

        def run(job: Job) -> None:
            def invoke(client: Any) -> Any:
                method = client.forward if call.forward_only else client.forward_backward
                return method(call.data, call.loss_fn, call.loss_fn_config)

            st().port_call(
                entry,
                job,
                invoke,
                lambda out: (wire.encode_forward_backward_output(out), PROTOBUF),
            )

        job = st().submit_sequenced(entry, call.seq_id, name, run)
        return _future(job, model_id=entry.model_id)

    @app.post("/api/v1/optim_step")
    async def optim_step(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.OptimStepBody)
        entry = st().model(body.model_id)
        seq_id = body.seq_id
        adam = AdamParams(**body.adam_params.model_dump())

        def run(job: Job) -> None:
            st().port_call(
                entry,
                job,
                lambda c: c.optim_step(adam),
                lambda r: _ok({"metrics": wire.optim_metrics_json(r.metrics)}),
            )

        job = st().submit_sequenced(entry, seq_id, "optim_step", run)
        return _future(job, model_id=entry.model_id)

    def _adapter_name(name: str, seq_id: Any) -> str:
        return f"{name}-s{seq_id}-{int(time.time() * 1000) % 10**9}"

    @app.post("/api/v1/save_weights")
    async def save_weights(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.SaveWeightsBody)
        entry = st().model(body.model_id)
        seq_id = body.seq_id
        raw_name = body.path or f"state-{seq_id}"
        overwrite = body.overwrite
        metadata = dict(body.user_metadata or {})

        def run(job: Job) -> None:
            name = check_name(raw_name)  # refuses traversal before anything is written
            if not overwrite and store.exists(entry.model_id, "weights", name):
                raise CheckpointRefused(
                    f"checkpoint tinker://{entry.model_id}/weights/{name} already exists; "
                    "pass overwrite=True"
                )

            def encode(resp: Any) -> tuple[Any, str]:
                path = store.commit(
                    entry.model_id,
                    "weights",
                    name,
                    resp.path,
                    user_metadata=metadata,
                    overwrite=True,
                )
                return _ok({"path": path, "type": "save_weights"})

            st().port_call(
                entry,
                job,
                lambda c: c.save_state(_adapter_name(name, seq_id), metadata or None),
                encode,
            )

        job = st().submit_sequenced(entry, seq_id, "save_weights", run)
        return _future(job, model_id=entry.model_id)

    @app.post("/api/v1/save_weights_for_sampler")
    async def save_weights_for_sampler(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.SaveForSamplerBody)
        entry = st().model(body.model_id)
        seq_id = body.seq_id
        raw_name = body.path
        sampler_seq = body.sampling_session_seq_id
        session = st().session(entry.session_id)

        def run(job: Job) -> None:
            if raw_name is None:
                if not isinstance(sampler_seq, int):
                    raise ValueError(
                        "save_weights_for_sampler needs path or sampling_session_seq_id"
                    )
                entry.drain_previous()  # the snapshot must include every earlier step
                client = entry.wait_ready()
                sc = client.save_weights_and_get_sampling_client(f"snapshot-s{seq_id}")
                sampler = st().add_sampler(session, sampler_seq, entry.base_model, None, sc)
                st().futures.complete(
                    job,
                    {"sampling_session_id": sampler.sampler_id, "type": "save_weights_for_sampler"},
                )
                return
            name = check_name(raw_name)

            def encode(resp: Any) -> tuple[Any, str]:
                path = store.commit(entry.model_id, "sampler_weights", name, resp.path)
                return _ok({"path": path, "type": "save_weights_for_sampler"})

            st().port_call(
                entry,
                job,
                lambda c: c.save_weights_for_sampler(_adapter_name(name, seq_id)),
                encode,
            )

        job = st().submit_sequenced(entry, seq_id, "save_weights_for_sampler", run)
        return _future(job, model_id=entry.model_id)

    @app.post("/api/v1/save_weights_external")
    async def save_weights_external(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.SaveWeightsExternalBody)
        entry = st().model(body.model_id)
        seq_id = body.seq_id

        def run(job: Job) -> None:
            name = check_name(body.path)
            recipients = exports.parse_recipients(body.age_encryption_recipients or [])

            def encode(resp: Any) -> tuple[Any, str]:
                produced = Path(resp.path)
                dest = store.state_dir(entry.model_id) / "external_weights" / produced.name
                exports.export_dir(produced, dest, recipients)
                shutil.rmtree(produced, ignore_errors=True)  # the export is the copy kept
                path = store.commit(entry.model_id, "external_weights", name, str(dest))
                return _ok({"path": path, "type": "save_weights_external"})

            st().port_call(
                entry,
                job,
                lambda c: c.save_weights_for_sampler(_adapter_name(name, seq_id)),
                encode,
            )

        job = st().submit_sequenced(entry, seq_id, "save_weights_external", run)
        return _future(job, model_id=entry.model_id)

    @app.get(
        "/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id:path}/external_weights_urls"
    )
    async def external_weights_urls(request: Request, run_id: str, checkpoint_id: str) -> Any:
        try:
            ckpt = await run_in_threadpool(store.resolve, f"tinker://{run_id}/{checkpoint_id}")
        except CheckpointRefused as exc:
            raise NotFound(str(exc)) from exc
        if ckpt.kind != "external_weights":
            raise ApiError(400, f"{ckpt.tinker_path} is not an external weights checkpoint")
        signed, expires = exports.sign(config.token.encode(), run_id, checkpoint_id)
        base = str(request.base_url).rstrip("/") + exports.URL_PREFIX + signed
        names = await run_in_threadpool(exports.files_of, Path(ckpt.adapter_path))
        return {
            "urls": {n: f"{base}/{n}" for n in names},
            "expires": datetime.fromtimestamp(expires, tz=UTC).isoformat(),
        }

    @app.get(exports.URL_PREFIX + "{token}/{signature}/{filename}")
    async def external_weights_file(token: str, signature: str, filename: str) -> Any:
        try:
            run_id, checkpoint_id = exports.verify(config.token.encode(), token, signature)
            ckpt = await run_in_threadpool(store.resolve, f"tinker://{run_id}/{checkpoint_id}")
        except CheckpointRefused as exc:
            return JSONResponse({"detail": str(exc)}, status_code=403)
        directory = Path(ckpt.adapter_path)
        if filename not in await run_in_threadpool(exports.files_of, directory):
            raise NotFound(f"{ckpt.tinker_path} has no file {filename!r}")
        return FileResponse(directory / filename, media_type="application/octet-stream")

    def _load(client: Any, adapter_path: str, kind: str, optimizer: bool) -> Any:
        if kind == "external_weights":
            raise CheckpointRefused(
                "external weights are for download; load weights/ or sampler_weights/"
            )
        loader = None
        if not optimizer or kind == "sampler_weights":
            loader = getattr(client, "load_weights", None)
        return (loader or client.load_state)(adapter_path)

    @app.post("/api/v1/load_weights")
    async def load_weights(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.LoadWeightsBody)
        path = body.path
        optimizer = body.optimizer
        if body.session_id is not None:
            return await _create_via_load(body, path, optimizer)
        if body.model_id is None:
            raise ApiError(400, "load_weights needs model_id (or session_id and model_seq_id)")
        entry = st().model(body.model_id)

        def run(job: Job) -> None:
            ckpt = store.resolve(path)

            st().port_call(
                entry,
                job,
                lambda c: _load(c, ckpt.adapter_path, ckpt.kind, optimizer),
                lambda _: _ok({"path": ckpt.tinker_path, "type": "load_weights"}),
            )

        job = st().submit_sequenced(entry, body.seq_id, "load_weights", run)
        return _future(job, model_id=entry.model_id)

    async def _create_via_load(
        body: sc.LoadWeightsBody, path: str, optimizer: bool
    ) -> dict[str, Any]:
        session = st().session(str(body.session_id))
        model_seq_id = body.model_seq_id
        if model_seq_id is None:
            raise ApiError(400, "field 'model_seq_id': required with session_id")
        job = st().futures.new("load_weights")
        try:
            ckpt = store.resolve(path)
        except CheckpointRefused as exc:
            st().futures.fail(job, exc)
            return _future(job)
        run = ckpt.run
        base_model = body.base_model or str(run.get("base_model"))
        entry = st().add_model(
            session,
            model_seq_id,
            base_model,
            run.get("lora_rank"),
            run.get("seed"),
            body.user_metadata,
        )

        def after(client: Any) -> Any:
            return _load(client, ckpt.adapter_path, ckpt.kind, optimizer).result()

        st().init_model(
            entry,
            job,
            after,
            lambda _: {
                "path": ckpt.tinker_path,
                "model_id": entry.model_id,
                "type": "load_weights",
            },
        )
        return _future(job, model_id=entry.model_id)

    @app.get("/api/v1/training_runs/{model_id}/checkpoints")
    async def list_checkpoints(model_id: str) -> dict[str, Any]:
        found = await run_in_threadpool(store.list, model_id)
        return {"checkpoints": [runs.checkpoint_json(c) for c in found]}

    def _run_json(run_id: str) -> dict[str, Any]:
        live = st().live_model(run_id)
        return runs.training_run_json(store, run_id, live.last_request if live else None)

    @app.get("/api/v1/training_runs")
    async def list_training_runs(limit: int = 20, offset: int = 0) -> dict[str, Any]:
        if limit < 0 or offset < 0:
            raise ApiError(400, "limit and offset must be >= 0")

        def page() -> dict[str, Any]:
            ids = list(reversed(store.runs()))  # newest first, as Tinker lists them
            chosen = ids[offset : offset + limit]
            return {
                "training_runs": [_run_json(r) for r in chosen],
                "cursor": {"offset": offset, "limit": limit, "total_count": len(ids)},
            }

        return await run_in_threadpool(page)

    @app.get("/api/v1/training_runs/{run_id}")
    async def get_training_run(run_id: str) -> dict[str, Any]:
        try:
            return await run_in_threadpool(_run_json, run_id)
        except CheckpointRefused as exc:
            raise NotFound(str(exc)) from exc

    @app.get("/api/v1/checkpoints")
    async def list_user_checkpoints(limit: int = 100, offset: int = 0) -> dict[str, Any]:
        if limit < 0 or offset < 0:
            raise ApiError(400, "limit and offset must be >= 0")

        def page() -> dict[str, Any]:
            found = [c for r in reversed(store.runs()) for c in store.list(r)]
            found.sort(key=lambda c: c.created_at, reverse=True)
            return {
                "checkpoints": [runs.checkpoint_json(c) for c in found[offset : offset + limit]],
                "cursor": {"offset": offset, "limit": limit, "total_count": len(found)},
            }

        return await run_in_threadpool(page)

    @app.post("/api/v1/weights_info")
    async def weights_info(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.TinkerPathBody)
        ckpt = await run_in_threadpool(store.resolve, body.tinker_path)
        return {
            "base_model": str(ckpt.run.get("base_model")),
            "is_lora": bool(ckpt.run.get("is_lora", True)),
            "lora_rank": ckpt.run.get("lora_rank"),
        }

    @app.put("/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id:path}/ttl")
    async def set_checkpoint_ttl(run_id: str, checkpoint_id: str) -> Response:
        # Accepted for compatibility; kitchen keeps checkpoints until they are deleted.
        try:
            await run_in_threadpool(store.resolve, f"tinker://{run_id}/{checkpoint_id}")
        except CheckpointRefused as exc:
            raise NotFound(str(exc)) from exc
        return Response(status_code=200)

    @app.delete("/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id:path}")
    async def delete_checkpoint(run_id: str, checkpoint_id: str) -> Response:
        try:
            await run_in_threadpool(store.delete, f"tinker://{run_id}/{checkpoint_id}")
        except CheckpointRefused as exc:
            if "not found" in str(exc):
                raise NotFound(str(exc)) from exc
            raise
        return Response(status_code=200)

    # -- sampling ------------------------------------------------------------------

    @app.post("/api/v1/create_sampling_session")
    async def create_sampling_session(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.CreateSamplerBody)
        session = st().session(body.session_id)
        seq = body.sampling_session_seq_id
        model_path = body.model_path
        st().check_new_sampler(session, seq)  # 409 before any model is loaded
        if model_path:
            base_model, client = await run_in_threadpool(st().sampling_from_checkpoint, model_path)
        else:
            if body.base_model is None:
                raise ApiError(400, "create_sampling_session needs base_model or model_path")
            base_model = body.base_model
            try:
                client = await run_in_threadpool(st().base_sampling, base_model)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from exc
        sampler = st().add_sampler(session, seq, base_model, model_path, client)
        return {"type": "create_sampling_session", "sampling_session_id": sampler.sampler_id}

    @app.post("/api/v1/join_sampling_session")
    async def join_sampling_session(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.SamplerIdBody)
        sampler = st().sampler(body.sampling_session_id)
        return {"type": "join_sampling_session", "client_counter": next(sampler.clients)}

    @app.get("/api/v1/samplers/{sampler_id}")
    async def get_sampler(sampler_id: str) -> dict[str, Any]:
        s = st().sampler(sampler_id)
        return {"sampler_id": s.sampler_id, "base_model": s.base_model, "model_path": s.model_path}

    @app.post("/api/v1/asample")
    async def asample(request: Request) -> dict[str, Any]:
        body = await body_of(request, sc.SampleBody)
        body.check_limits(config.limits)
        sid = body.sampling_session_id
        sampler = st().sampler(sid)
        prompt = wire.model_input_from_json(body.prompt.model_dump())
        params = wire.sampling_params_from_json(body.sampling_params.model_dump())
        n = body.num_samples
        want_prompt_lp = bool(body.prompt_logprobs)
        last_n = body.prompt_logprobs_last_n
        job = st().futures.new("sample")
        unsupported = [
            k for k in ("topk_sample_logprobs", "prompt_alt_tokens_k") if getattr(body, k)
        ] + (["target_prompt_logprobs"] if body.target_prompt_logprobs else [])
        topk = body.topk_prompt_logprobs

        def run() -> None:
            if unsupported:
                raise ValueError(f"kitchen serve does not support {', '.join(unsupported)}")
            topk_fn = getattr(sampler.client, "topk_prompt_logprobs", None)
            if topk and topk_fn is None:
                raise ValueError("this backend's sampler has no top-k prompt logprobs")
            topk_fut = topk_fn(prompt, topk) if topk and topk_fn is not None else None
            fut = sampler.client.sample(prompt, n, params, want_prompt_lp)

            def cut(values: list[Any]) -> list[Any]:
                drop = max(0, len(values) - int(last_n)) if last_n else 0
                return [None] * drop + values[drop:]

            def encode(resp: SampleResponse) -> None:
                if last_n and resp.prompt_logprobs is not None:
                    resp = SampleResponse(resp.sequences, tuple(cut(list(resp.prompt_logprobs))))
                extra = None
                if topk_fut is not None:
                    extra = (cut(list(topk_fut.result())), topk)
                st().futures.complete(job, wire.encode_sample_response(resp, extra), PROTOBUF)

            def done(value: Any, exc: BaseException | None) -> None:
                if exc is not None:
                    st().futures.fail(job, exc)
                else:
                    try:
                        encode(value)
                    except BaseException as err:
                        st().futures.fail(job, err)

            watch(fut, done)

        def guarded() -> None:
            try:
                run()
            except BaseException as exc:
                st().futures.fail(job, exc)

        st().sample_pool.submit(guarded)
        seq = body.seq_id
        return _future(job, sample_sequence_ids=[f"{sid}:{seq}:{i}" for i in range(n)])

    return app

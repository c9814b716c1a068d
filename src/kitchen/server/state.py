"""Server state: sessions, training models, sampling sessions and the futures queue.

Every long operation is a *future*: the HTTP handler registers a :class:`Job`, returns
``{"request_id": ...}`` at once, and the SDK polls ``/api/v1/retrieve_future``. Polls are
long polls: the handler waits (up to ``poll_s``) for the job to finish, so a result
reaches the client as soon as it exists.

Training requests carry a per-model ``seq_id`` (1, 2, 3, ...). The SDK may send them out
of order (chunks of one ``forward_backward`` go in parallel, the first one last) and may
retry them; the server runs each model's requests strictly in ``seq_id`` order, once.
Requests are handed to the backend's port in that order from one dispatcher thread per
model; the port's own futures then let the backend pipeline them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kitchen.ports.sampling import SamplingClient
from kitchen.ports.training import TrainingClient
from kitchen.server.backends import Backend
from kitchen.server.storage import CheckpointRefused, CheckpointStore

log = logging.getLogger("kitchen.server")

PROTOBUF = "application/x-protobuf"


class NotFound(LookupError):
    """An id (session, model, sampler, request) the server does not know."""


class Conflict(ValueError):
    """A request reuses an id that already names something (answered 409)."""


@dataclass
class Job:
    request_id: str
    kind: str
    created: float = field(default_factory=time.monotonic)
    done: bool = False
    #: JSON-able dict, or protobuf bytes (``content_type`` says which).
    payload: Any = None
    content_type: str = "application/json"
    error: str | None = None
    category: str = "server"
    completed: float = 0.0
    event: asyncio.Event = field(default_factory=asyncio.Event)


def error_category(exc: BaseException) -> str:
    if isinstance(exc, ValueError | TypeError | KeyError | LookupError | NotImplementedError):
        return "user"
    return "server"


class FutureStore:
    """Request id → job. Completion may come from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, retain_s: float = 900.0) -> None:
        self._loop = loop
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._retain_s = retain_s

    def new(self, kind: str) -> Job:
        job = Job(request_id=uuid.uuid4().hex, kind=kind)
        with self._lock:
            self._jobs[job.request_id] = job
        return job

    def get(self, request_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(request_id)
        if job is None:
            raise NotFound(f"unknown request_id {request_id!r} (expired, or from before a restart)")
        return job

    def _finish(self, job: Job) -> None:
        job.done = True
        job.completed = time.monotonic()
        self._loop.call_soon_threadsafe(job.event.set)

    def complete(self, job: Job, payload: Any, content_type: str = "application/json") -> None:
        job.payload, job.content_type = payload, content_type
        self._finish(job)

    def fail(self, job: Job, exc: BaseException | str, category: str | None = None) -> None:
        if isinstance(exc, BaseException):
            job.error = f"{type(exc).__name__}: {exc}"
            job.category = category or error_category(exc)
            if job.category == "server":
                log.error("request %s (%s) failed", job.request_id, job.kind, exc_info=exc)
        else:
            job.error, job.category = exc, category or "user"
        self._finish(job)

    def sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            stale = [
                k for k, j in self._jobs.items() if j.done and now - j.completed > self._retain_s
            ]
            for k in stale:
                del self._jobs[k]


def watch(fut: Any, on_done: Callable[[Any, BaseException | None], None]) -> None:
    """Call ``on_done(value, error)`` when a port future settles."""

    def settle(_: Any = None) -> None:
        try:
            value = fut.result()
        except BaseException as exc:
            on_done(None, exc)
        else:
            on_done(value, None)

    if hasattr(fut, "add_done_callback"):
        fut.add_done_callback(settle)
    else:  # a bare Future protocol object: wait for it on a helper thread
        threading.Thread(target=settle, daemon=True).start()


@dataclass
class ModelEntry:
    model_id: str
    session_id: str
    base_model: str
    lora_rank: int | None
    seed: int | None
    client: TrainingClient | None = None
    next_seq: int = 1
    pending: dict[int, tuple[Job, Callable[[Job], None]]] = field(default_factory=dict)
    seen: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    dispatcher: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kitchen-model"
        )
    )
    #: The most recent port future handed to the backend (ordering for synchronous calls).
    last_future: Any = None
    ready: threading.Event = field(default_factory=threading.Event)
    failed: str | None = None
    #: ``user_metadata`` given at creation (returned by ``GET training_runs/{id}``).
    user_metadata: dict[str, str] = field(default_factory=dict)
    #: Wall-clock time of the latest request for this model.
    last_request: float = field(default_factory=time.time)
    #: Set when its session finished: the dispatcher is shut down, nothing more may run.
    closed: bool = False

    def wait_ready(self) -> TrainingClient:
        self.ready.wait()
        if self.client is None:
            raise RuntimeError(f"model {self.model_id} failed to initialise: {self.failed}")
        return self.client

    def drain_previous(self) -> None:
        """Block until every port call dispatched so far has settled."""
        fut = self.last_future
        if fut is not None:
            try:
                fut.result()
            except BaseException:
                pass


@dataclass
class SamplerEntry:
    sampler_id: str
    session_id: str
    base_model: str
    model_path: str | None
    client: SamplingClient
    clients: itertools.count = field(default_factory=lambda: itertools.count(1))


@dataclass
class Session:
    session_id: str
    created: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.monotonic)
    models: list[str] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)
    finished: bool = False


class ServerState:
    def __init__(
        self,
        backend: Backend,
        store: CheckpointStore,
        loop: asyncio.AbstractEventLoop,
        *,
        session_ttl_s: float = 600.0,
        backend_name: str = "custom",
        seq_gap_s: float = 30.0,
    ) -> None:
        self.seq_gap_s = seq_gap_s
        self.backend = backend
        self.backend_name = backend_name
        self.store = store
        self.futures = FutureStore(loop)
        self.sessions: dict[str, Session] = {}
        self.models: dict[str, ModelEntry] = {}
        self.samplers: dict[str, SamplerEntry] = {}
        self.session_ttl_s = session_ttl_s
        self.lock = threading.Lock()
        self.sample_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="kitchen-sample"
        )

    # -- sessions --------------------------------------------------------------------

    def create_session(self) -> Session:
        s = Session(session_id=uuid.uuid4().hex[:16])
        with self.lock:
            self.sessions[s.session_id] = s
        return s

    def session(self, session_id: str) -> Session:
        with self.lock:
            s = self.sessions.get(session_id)
        if s is None or s.finished:
            raise NotFound(f"unknown or finished session {session_id!r}")
        s.last_seen = time.monotonic()
        return s

    def finish_session(self, session_id: str) -> None:
        with self.lock:
            s = self.sessions.pop(session_id, None)
            if s is None:
                return
            s.finished = True
            for mid in s.models:
                entry = self.models.pop(mid, None)
                if entry is not None:
                    self._close_entry(entry)
            samplers = [self.samplers.pop(sid, None) for sid in s.samplers]
        # Outside the lock: a shared base's sampler frees its adapter, a private one its
        # thread (which may first finish its queued requests).
        closes = [getattr(e.client, "close", None) for e in samplers if e is not None]
        if any(c is not None for c in closes):
            threading.Thread(
                target=lambda: [c() for c in closes if c is not None],
                name="kitchen-close-samplers",
                daemon=True,
            ).start()

    def _close_entry(self, entry: ModelEntry) -> None:
        with entry.lock:
            entry.closed = True
            # Requests still waiting for a lower seq_id will never run: say so, do not hang.
            for job, _ in entry.pending.values():
                self.futures.fail(job, f"model {entry.model_id}: its session finished")
            entry.pending.clear()
            close = getattr(entry.client, "close", None)
            if close is not None:
                # After the model's queued requests: frees its adapter or thread.
                entry.dispatcher.submit(close)
            entry.dispatcher.shutdown(wait=False)

    def expire_sessions(self) -> list[str]:
        now = time.monotonic()
        with self.lock:
            stale = [k for k, s in self.sessions.items() if now - s.last_seen > self.session_ttl_s]
        for k in stale:
            log.info("session %s expired (no heartbeat for %.0f s)", k, self.session_ttl_s)
            self.finish_session(k)
        return stale

    # -- models ----------------------------------------------------------------------

    def model(self, model_id: str) -> ModelEntry:
        with self.lock:
            entry = self.models.get(model_id)
        if entry is None:
            raise NotFound(f"unknown model_id {model_id!r} (finished session, or server restarted)")
        entry.last_request = time.time()
        with self.lock:
            s = self.sessions.get(entry.session_id)
        if s is not None:
            s.last_seen = time.monotonic()
        return entry

    def live_model(self, model_id: str) -> ModelEntry | None:
        """The model if this server holds it now (no side effects)."""
        with self.lock:
            return self.models.get(model_id)

    def add_model(
        self,
        session: Session,
        model_seq_id: int,
        base_model: str,
        lora_rank: int | None,
        seed: int | None,
        user_metadata: Any = None,
    ) -> ModelEntry:
        model_id = f"{session.session_id}:train:{int(model_seq_id)}"
        with self.lock:
            if model_id in self.models:
                raise Conflict(f"model {model_id} already exists; use a new model_seq_id")
            entry = ModelEntry(model_id, session.session_id, base_model, lora_rank, seed)
            if isinstance(user_metadata, dict):
                entry.user_metadata = {str(k): str(v) for k, v in user_metadata.items()}
            self.models[model_id] = entry
            session.models.append(model_id)
        return entry

    def init_model(
        self,
        entry: ModelEntry,
        job: Job,
        after: Callable[[TrainingClient], Any] | None,
        encode: Callable[[Any], Any],
    ) -> None:
        """Build the backend client for ``entry`` off the event loop, then finish ``job``."""

        def run() -> None:
            try:
                client = self.backend.create_training(
                    base_model=entry.base_model,
                    lora_rank=entry.lora_rank,
                    seed=entry.seed,
                    state_dir=self.store.state_dir(entry.model_id),
                )
                self.store.write_run(
                    entry.model_id,
                    {
                        "base_model": entry.base_model,
                        "lora_rank": entry.lora_rank,
                        "seed": entry.seed,
                        "is_lora": entry.lora_rank is not None,
                        "user_metadata": entry.user_metadata,
                        "backend": self.backend_name,
                        "created_at": time.time(),
                    },
                )
                value = after(client) if after is not None else None
                entry.client = client
                entry.ready.set()
                self.futures.complete(job, encode(value))
            except BaseException as exc:
                entry.failed = f"{type(exc).__name__}: {exc}"
                entry.ready.set()
                self.futures.fail(job, exc)

        entry.dispatcher.submit(run)

    def submit_sequenced(
        self, entry: ModelEntry, seq_id: int | None, kind: str, run: Callable[[Job], None]
    ) -> Job:
        """Register a training request; run it when every lower ``seq_id`` has been run."""
        with entry.lock:
            if seq_id is not None and seq_id in entry.seen:
                return self.futures.get(entry.seen[seq_id])  # a retry of a request we have
            job = self.futures.new(kind)
            if entry.closed:
                self.futures.fail(job, f"model {entry.model_id}: its session finished")
                return job
            if seq_id is None:
                entry.dispatcher.submit(self._guard, entry, job, run)
                return job
            if seq_id < entry.next_seq:
                self.futures.fail(
                    job, f"seq_id {seq_id} was already used for model {entry.model_id}"
                )
                return job
            entry.seen[seq_id] = job.request_id
            entry.pending[seq_id] = (job, run)
            self._drain(entry)
            if entry.pending:
                self._arm_gap_timer(entry, entry.next_seq)
        return job

    def _drain(self, entry: ModelEntry) -> None:
        while entry.next_seq in entry.pending:
            job_, run_ = entry.pending.pop(entry.next_seq)
            entry.dispatcher.submit(self._guard, entry, job_, run_)
            entry.next_seq += 1

    def _arm_gap_timer(self, entry: ModelEntry, waiting_for: int) -> None:
        """If ``waiting_for`` never arrives (the client gave up on it, e.g. after a 413),
        skip it after ``seq_gap_s`` so the model's later requests are not stuck forever."""

        def fire() -> None:
            with entry.lock:
                if entry.closed or entry.next_seq != waiting_for or not entry.pending:
                    return
                nxt = min(entry.pending)
                log.warning(
                    "model %s: seq_id %d..%d never arrived; skipping to %d",
                    entry.model_id,
                    waiting_for,
                    nxt - 1,
                    nxt,
                )
                entry.next_seq = nxt
                self._drain(entry)
                if entry.pending:
                    self._arm_gap_timer(entry, entry.next_seq)

        timer = threading.Timer(self.seq_gap_s, fire)
        timer.daemon = True
        timer.start()

    def _guard(self, entry: ModelEntry, job: Job, run: Callable[[Job], None]) -> None:
        try:
            entry.wait_ready()
            run(job)
        except BaseException as exc:
            self.futures.fail(job, exc)

    def port_call(
        self,
        entry: ModelEntry,
        job: Job,
        call: Callable[[TrainingClient], Any],
        encode: Callable[[Any], tuple[Any, str]],
    ) -> None:
        """Run ``call(client)`` (returns a port future) and finish ``job`` when it settles."""
        fut = call(entry.wait_ready())
        entry.last_future = fut

        def on_done(value: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self.futures.fail(job, exc)
                return
            try:
                payload, ctype = encode(value)
            except BaseException as err:
                self.futures.fail(job, err)
            else:
                self.futures.complete(job, payload, ctype)

        watch(fut, on_done)

    # -- samplers --------------------------------------------------------------------

    def add_sampler(
        self,
        session: Session,
        seq_id: int,
        base_model: str,
        model_path: str | None,
        client: SamplingClient,
    ) -> SamplerEntry:
        sid = f"{session.session_id}:sample:{int(seq_id)}"
        entry = SamplerEntry(sid, session.session_id, base_model, model_path, client)
        with self.lock:
            if sid in self.samplers:
                raise Conflict(f"sampling session {sid} already exists; use a new seq id")
            self.samplers[sid] = entry
            session.samplers.append(sid)
        return entry

    def check_new_sampler(self, session: Session, seq_id: int) -> None:
        """Raise :class:`Conflict` if ``seq_id`` already names a sampler of ``session``."""
        sid = f"{session.session_id}:sample:{int(seq_id)}"
        with self.lock:
            if sid in self.samplers:
                raise Conflict(f"sampling session {sid} already exists; use a new seq id")

    def sampler(self, sampler_id: str) -> SamplerEntry:
        with self.lock:
            entry = self.samplers.get(sampler_id)
        if entry is None:
            raise NotFound(f"unknown sampling_session_id {sampler_id!r}")
        with self.lock:
            s = self.sessions.get(entry.session_id)
        if s is not None:
            s.last_seen = time.monotonic()
        return entry

    def sampling_from_checkpoint(self, tinker_path: str) -> tuple[str, SamplingClient]:
        """A sampling client over the weights saved at ``tinker_path`` (blocking)."""
        ckpt = self.store.resolve(tinker_path)
        if ckpt.kind == "external_weights":
            raise CheckpointRefused(
                f"{tinker_path}: external weights are for download; sample from "
                "weights/ or sampler_weights/"
            )
        run = ckpt.run
        base_model = str(run.get("base_model"))
        hook = getattr(self.backend, "sampling_from_checkpoint", None)
        if hook is not None:
            return base_model, hook(ckpt)
        scratch = self.store.state_dir(f"sampler-{uuid.uuid4().hex[:12]}")
        client = self.backend.create_training(
            base_model=base_model,
            lora_rank=run.get("lora_rank"),
            seed=run.get("seed"),
            state_dir=scratch,
        )
        loader = getattr(client, "load_weights", None) if ckpt.kind == "sampler_weights" else None
        (loader or client.load_state)(ckpt.adapter_path).result()
        sampler = client.save_weights_and_get_sampling_client("checkpoint")
        close = getattr(client, "close", None)
        if close is not None:
            close()  # queued after the snapshot; frees the loader (a shared base's adapter)
        return base_model, sampler

    def base_sampling(self, base_model: str) -> SamplingClient:
        check = getattr(self.backend, "check_model", None)
        if check is not None:
            check(base_model)
        scratch = self.store.state_dir(f"sampler-{uuid.uuid4().hex[:12]}")
        return self.backend.sampling_for_base(base_model, scratch)

"""``TrainingClient`` and ``SamplingClient`` over the official tinker SDK.

Works against Tinker itself or a ``kitchen serve`` (same wire protocol). Nothing touches
the network until the first call: constructing a client only records where to connect.

Every call returns the SDK's future wrapped as a :class:`~kitchen.ports.futures.KFuture`,
so ``forward_backward`` → ``optim_step`` → next ``forward_backward`` can all be in flight
together (the SDK orders them with per-model sequence ids; the server runs them in order).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kitchen.adapters.remote import convert
from kitchen.errors import UsageError
from kitchen.ports.futures import Future, KFuture
from kitchen.ports.types import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    GetInfoResponse,
    LoadWeightsResponse,
    LossFnType,
    ModelInput,
    OptimStepResponse,
    SampleResponse,
    SamplingParams,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
)
from kitchen.ports.validation import validate_datums

#: The tinker SDK versions this adapter is tested with (see docs/remote.md).
SDK_RANGE = ">=0.38,<0.39"


@dataclass
class RemoteConfig:
    """Where and what to train. ``base_url``/``api_key`` default to ``TINKER_BASE_URL``/
    ``TINKER_API_KEY`` (resolved by the SDK); ``base_model`` defaults to the first model the
    server lists."""

    base_url: str | None = None
    api_key: str | None = None
    base_model: str | None = None
    lora_rank: int = 32
    seed: int | None = None
    train_mlp: bool = True
    train_attn: bool = True
    train_unembed: bool = True
    user_metadata: dict[str, str] = field(default_factory=dict)


class _Connection:
    """One lazily created ``tinker.ServiceClient`` shared by the training and sampling ports."""

    def __init__(self, config: RemoteConfig) -> None:
        self.config = config
        self._service: Any = None
        self._lock = threading.Lock()
        self._base_model: str | None = config.base_model

    def url(self) -> str:
        from tinker.lib.base_url import resolve_base_url

        return resolve_base_url(self.config.base_url)

    def preflight(self) -> None:
        """Fail in seconds, naming the URL, when there is no key or nothing listens there
        (the SDK itself would retry a dead address for minutes)."""
        url = self.url()
        if not (self.config.api_key or os.environ.get("TINKER_API_KEY")):
            raise UsageError(
                f"no Tinker API key for {url}: set TINKER_API_KEY (or model.api_key) to your "
                "key, tml-...; for `kitchen serve` it is the server's --token"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"Tinker API URL {url!r} is not an http(s) URL; fix TINKER_BASE_URL or "
                "model.base_url (e.g. http://127.0.0.1:8000 for kitchen serve)"
            )
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            socket.create_connection((parts.hostname, port), timeout=PREFLIGHT_TIMEOUT_S).close()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise UsageError(
                f"cannot reach the Tinker API at {url} ({reason}); start `kitchen serve` "
                "there, or fix TINKER_BASE_URL / model.base_url"
            ) from None

    def service(self) -> Any:
        with self._lock:
            if self._service is None:
                import tinker

                _check_sdk_version(tinker)
                self.preflight()
                with sdk_errors(self.url()):
                    self._service = tinker.ServiceClient(
                        base_url=self.config.base_url,
                        api_key=self.config.api_key,
                        user_metadata=dict(self.config.user_metadata) or None,
                    )
            return self._service

    def base_model(self) -> str:
        if self._base_model is None:
            import tinker

            self.preflight()
            with sdk_errors(self.url()):
                rest = tinker.RestClient(base_url=self.config.base_url, api_key=self.config.api_key)
                caps = rest.get_server_capabilities().result()
            names = [m.model_name for m in caps.supported_models if m.model_name]
            if not names:
                raise UsageError("the server lists no models; set model.base_model in the config")
            self._base_model = names[0]
        return self._base_model

    def close(self) -> None:
        with self._lock:
            service, self._service = self._service, None
        if service is not None:
            try:
                service.close("success").result(timeout=10)
            except Exception:
                pass


#: How long the reachability check waits for a TCP connection.
PREFLIGHT_TIMEOUT_S = 5.0


@contextlib.contextmanager
def sdk_errors(url: str) -> Iterator[None]:
    """Turn the SDK's connection and authentication errors into one-line usage errors
    that name the URL and the fix (exit 2 instead of a bare exception name)."""
    import tinker

    try:
        yield
    except (tinker.AuthenticationError, tinker.PermissionDeniedError) as exc:
        raise UsageError(
            f"the Tinker API at {url} refused the API key ({type(exc).__name__}); set "
            "TINKER_API_KEY (or model.api_key) to a valid key (for kitchen serve: its --token)"
        ) from None
    except (tinker.APIConnectionError, tinker.APITimeoutError) as exc:
        raise UsageError(
            f"cannot reach the Tinker API at {url} ({type(exc).__name__}: {exc}); check that "
            "the server is up and TINKER_BASE_URL / model.base_url"
        ) from None
    except tinker.TinkerError as exc:
        if "api key" in str(exc).lower() or "api_key" in str(exc).lower():
            raise UsageError(f"Tinker API at {url}: {exc}; set TINKER_API_KEY") from None
        raise


def _check_sdk_version(tinker: Any) -> None:
    version = getattr(tinker, "__version__", "0")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts[:2] != (0, 38):
        warnings.warn(
            f"kitchen's remote adapter is tested with tinker {SDK_RANGE}; found {version}",
            RuntimeWarning,
            stacklevel=3,
        )


class RemoteSamplingClient:
    """Kitchen ``SamplingClient`` over a tinker SDK ``SamplingClient`` (or a future of one)."""

    def __init__(self, sdk_client: Any) -> None:
        self._sdk = sdk_client
        self._lock = threading.Lock()

    @classmethod
    def for_base_model(cls, connection: _Connection) -> RemoteSamplingClient:
        client = cls(None)
        client._factory = lambda: connection.service().create_sampling_client(  # type: ignore[attr-defined]
            base_model=connection.base_model()
        )
        return client

    @classmethod
    def for_path(cls, connection: _Connection, model_path: str) -> RemoteSamplingClient:
        client = cls(None)
        client._factory = lambda: connection.service().create_sampling_client(  # type: ignore[attr-defined]
            model_path=model_path
        )
        return client

    def _client(self) -> Any:
        with self._lock:
            if self._sdk is None:
                self._sdk = self._factory()  # type: ignore[attr-defined]
            from tinker.lib.public_interfaces.backcompat_client_future import (
                BackcompatClientFuture,
            )

            if isinstance(self._sdk, BackcompatClientFuture):
                self._sdk = self._sdk.result()  # a future of the SDK client, not the client
            return self._sdk

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
    ) -> Future[SampleResponse]:
        fut = self._client().sample(
            convert.model_input_to_sdk(prompt),
            num_samples,
            convert.sampling_params_to_sdk(sampling_params),
            include_prompt_logprobs=include_prompt_logprobs,
        )
        return convert.mapped(fut, convert.sample_response_from_sdk)

    def compute_logprobs(self, prompt: ModelInput) -> Future[list[float | None]]:
        fut = self._client().compute_logprobs(convert.model_input_to_sdk(prompt))
        return convert.mapped(fut, lambda lps: [None if x is None else float(x) for x in lps])


class RemoteTrainingClient:
    """Kitchen ``TrainingClient`` over a tinker SDK LoRA ``TrainingClient``."""

    def __init__(
        self, config: RemoteConfig | None = None, *, connection: _Connection | None = None
    ) -> None:
        self.config = config or RemoteConfig()
        self._conn = connection or _Connection(self.config)
        self._sdk: Any = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def connection(self) -> _Connection:
        return self._conn

    def _client(self) -> Any:
        while True:
            with self._lock:
                sdk = self._sdk
                if sdk is None:
                    sdk = self._sdk = self._create()
                if not isinstance(sdk, _Pending):
                    return sdk
            sdk.event.wait()  # a load_state is building the replacement client

    def _create(self) -> Any:
        cfg = self.config
        service = self._conn.service()
        base_model = self._conn.base_model()
        with sdk_errors(self._conn.url()):
            return service.create_lora_training_client(
                base_model=base_model,
                rank=cfg.lora_rank,
                seed=cfg.seed,
                train_mlp=cfg.train_mlp,
                train_attn=cfg.train_attn,
                train_unembed=cfg.train_unembed,
            ).result()

    def close(self) -> None:
        self._conn.close()

    # -- port ------------------------------------------------------------------------

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> Future[ForwardBackwardOutput]:
        validate_datums(data, loss_fn)
        fut = self._client().forward_backward(
            convert.datums_to_sdk(data), loss_fn, dict(loss_fn_config) if loss_fn_config else None
        )
        return convert.mapped(fut, convert.forward_backward_output_from_sdk)

    def forward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: Mapping[str, float] | None = None,
    ) -> Future[ForwardBackwardOutput]:
        validate_datums(data, loss_fn)
        fut = self._client().forward(
            convert.datums_to_sdk(data), loss_fn, dict(loss_fn_config) if loss_fn_config else None
        )
        return convert.mapped(fut, convert.forward_backward_output_from_sdk)

    def optim_step(self, adam_params: AdamParams) -> Future[OptimStepResponse]:
        fut = self._client().optim_step(convert.adam_to_sdk(adam_params))
        return convert.mapped(fut, convert.optim_step_from_sdk)

    def save_state(
        self, name: str, user_metadata: Mapping[str, str] | None = None
    ) -> Future[SaveWeightsResponse]:
        # Local adapters replace a checkpoint of the same name; so does this one.
        fut = self._client().save_state(
            name, overwrite=True, user_metadata=dict(user_metadata) if user_metadata else None
        )
        return convert.mapped(fut, convert.save_weights_from_sdk)

    def load_state(self, path: str) -> Future[LoadWeightsResponse]:
        """Restore weights and optimiser state.

        Uses the SDK's recommended path (a new training client created from the state);
        later calls go to it once it is ready. Calls already in flight finish first.
        """
        previous = self._client()  # the session exists; earlier calls are already queued
        created = self._conn.service().create_training_client_from_state_with_optimizer(path)
        inner = created.future() if hasattr(created, "future") else created
        out: KFuture[LoadWeightsResponse] = KFuture()
        pending = _Pending(previous)
        with self._lock:
            self._sdk = pending  # new calls wait: they must reach the restored model

        def swap(f: Any) -> None:
            exc = f.exception()
            with self._lock:
                self._sdk = previous if exc is not None else f.result()
            pending.event.set()
            if exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(LoadWeightsResponse(path=path))

        inner.add_done_callback(swap)
        return out

    def save_weights_for_sampler(self, name: str) -> Future[SaveWeightsForSamplerResponse]:
        fut = self._client().save_weights_for_sampler(name)
        return convert.mapped(fut, convert.save_for_sampler_from_sdk)

    def save_weights_and_get_sampling_client(self, name: str) -> RemoteSamplingClient:
        # The SDK's ephemeral snapshot (``name`` is accepted for the port's signature).
        del name
        return RemoteSamplingClient(self._client().save_weights_and_get_sampling_client())

    def get_info(self) -> GetInfoResponse:
        return convert.get_info_from_sdk(self._client().get_info())


class _Pending:
    """Stands in for the SDK client while ``load_state`` builds its replacement."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.event = threading.Event()

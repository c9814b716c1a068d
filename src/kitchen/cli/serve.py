"""``kitchen serve``: run the Tinker-compatible server. Imports nothing heavy until run."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2

_TOKEN_ENV = "KITCHEN_SERVE_TOKEN"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve the Tinker API (training, sampling, checkpoints) over a local backend",
        description=(
            "Serve the part of the Tinker HTTP API that the tinker SDK (>=0.38,<0.39) uses, "
            "backed by kitchen's hf (or noop) adapter. Point the SDK, or kitchen's remote "
            "adapter, at http://HOST:PORT with the token as its API key."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port, 1-65535 (default 8000)")
    p.add_argument(
        "--token",
        default=None,
        help=f"API key clients must send (default ${_TOKEN_ENV}); must start with 'tml-', "
        "as the tinker SDK requires",
    )
    p.add_argument("--data-dir", default="./kitchen-serve-data", help="checkpoints go here")
    p.add_argument("--backend", default="hf", help="hf | noop | package.module:factory")
    p.add_argument("--model-spec", default=None, help="model spec as JSON text or a JSON file")
    p.add_argument("--model", default=None, help="local model path (hf backend)")
    p.add_argument("--model-name", default=None, help="base_model name clients use")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="request body size limit (MiB)")
    p.add_argument(
        "--max-num-samples", type=int, default=64, help="largest num_samples of one request"
    )
    p.add_argument(
        "--max-tokens", type=int, default=4096, help="largest sampling max_tokens of one request"
    )
    p.add_argument(
        "--max-datums", type=int, default=4096, help="most datums in one forward_backward"
    )
    p.add_argument("--session-ttl", type=float, default=600.0, help="seconds without heartbeat")
    p.add_argument(
        "--seq-gap-timeout",
        type=float,
        default=30.0,
        help="seconds a model waits for a request that never arrived before skipping it",
    )
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_cmd_serve)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is out of range; use 1-65535")
    return port


def _check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before the server starts (exit 2 with the fix)."""
    import math
    import socket
    from pathlib import Path

    from kitchen.errors import UsageError

    if not (math.isfinite(args.max_body_mb) and args.max_body_mb > 0):
        raise UsageError(f"--max-body-mb must be a positive number of MiB, got {args.max_body_mb}")
    for flag in ("max_num_samples", "max_tokens", "max_datums", "session_ttl", "seq_gap_timeout"):
        value = getattr(args, flag)
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    data = Path(args.data_dir)
    if data.exists() and not data.is_dir():
        raise UsageError(f"--data-dir {data} is a file; give a directory (it is created)")
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--data-dir {data}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(data, os.W_OK):
        raise UsageError(f"--data-dir {data} is not writable")
    try:
        infos = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(
            f"--host {args.host!r} is not an address of this machine ({exc})"
        ) from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as exc:
            if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise UsageError(
                    f"port {args.port} on {args.host} is in use; pick another --port"
                ) from None
            raise UsageError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    from kitchen.errors import UsageError

    token = args.token or os.environ.get(_TOKEN_ENV)
    if not token:
        raise UsageError(f"give --token tml-... (or set ${_TOKEN_ENV}); clients send it as API key")
    if not token.startswith("tml-"):
        raise UsageError("--token must start with 'tml-' (the tinker SDK refuses other keys)")
    if len(token) < 12:
        raise UsageError("--token is too short; use at least 8 characters after 'tml-'")
    _check_args(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: binding to {args.host}; anyone who can reach it and knows the token "
            "can train and sample. Prefer an SSH tunnel or a TLS reverse proxy.",
            file=sys.stderr,
        )

    from kitchen.optional import require

    require("fastapi", "server")
    require("uvicorn", "server")
    require("tinker", "remote")
    import uvicorn

    from kitchen.server.app import ServerConfig, create_app
    from kitchen.server.backends import load_backend
    from kitchen.server.schemas import ServerLimits

    backend = load_backend(
        args.backend, model_spec=args.model_spec, model=args.model, model_name=args.model_name
    )
    config = ServerConfig(
        token=token,
        data_dir=args.data_dir,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        session_ttl_s=args.session_ttl,
        backend_name=args.backend,
        seq_gap_s=args.seq_gap_timeout,
        limits=ServerLimits(
            max_num_samples=args.max_num_samples,
            max_tokens=args.max_tokens,
            max_datums=args.max_datums,
        ),
    )
    app = create_app(backend, config)
    print(
        f"kitchen serve: {args.backend} backend, models {backend.model_names()}, "
        f"http://{args.host}:{args.port}, data in {os.path.abspath(args.data_dir)}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        timeout_graceful_shutdown=5,
    )
    return EXIT_OK

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
    p.add_argument("--port", type=int, default=8000)
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
    p.add_argument("--session-ttl", type=float, default=600.0, help="seconds without heartbeat")
    p.add_argument(
        "--seq-gap-timeout",
        type=float,
        default=30.0,
        help="seconds a model waits for a request that never arrived before skipping it",
    )
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from kitchen.errors import UsageError

    token = args.token or os.environ.get(_TOKEN_ENV)
    if not token:
        raise UsageError(f"give --token tml-... (or set ${_TOKEN_ENV}); clients send it as API key")
    if not token.startswith("tml-"):
        raise UsageError("--token must start with 'tml-' (the tinker SDK refuses other keys)")
    if len(token) < 12:
        raise UsageError("--token is too short; use at least 8 characters after 'tml-'")
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

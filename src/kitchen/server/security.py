"""ASGI middleware: API-key check and request body size limit.

Both run before any handler reads the body, so an unauthenticated or oversized request
costs the server almost nothing. The key travels in ``X-API-Key`` (what the tinker SDK
sends); it is compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths served without a key (liveness only; they reveal nothing).
PUBLIC_PATHS = frozenset({"/api/v1/healthz"})
#: Path prefixes served without a key: external-weights downloads, which carry their own
#: HMAC signature and expiry in the URL (kitchen.server.exports).
PUBLIC_PREFIXES = ("/api/v1/external_weights_files/",)


async def _reply(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from ``receive`` mid-stream; Starlette turns it into a 413 response."""


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, token: str, max_body_bytes: int) -> None:
        self.app = app
        self.token = token.encode()
        self.max_body = int(max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        path = str(scope.get("path", ""))
        if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
            given = headers.get(b"x-api-key", b"")
            if not given or not hmac.compare_digest(given, self.token):
                await _reply(send, 401, "missing or wrong API key (X-API-Key)")
                return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await _reply(send, 400, "bad Content-Length")
                return
            if n > self.max_body:
                await _reply(
                    send, 413, f"request body of {n} bytes exceeds the limit of {self.max_body}"
                )
                return
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            await _reply(
                send, 415, f"Content-Encoding {encoding.decode(errors='replace')!r} not supported"
            )
            return

        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(413, f"request body exceeds the limit of {self.max_body} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reply(send, 413, f"request body exceeds the limit of {self.max_body} bytes")

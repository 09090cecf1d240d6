"""Correlation ids and the request log line: a caller's `X-Correlation-Id` (or a new id) bound
to every log line of a request and to every command it sends, echoed back, and one
`http.request` line per request at INFO.

`Correlated` does it for every path as plain ASGI (not `BaseHTTPMiddleware`, which costs a
task and a stream per request); the checkout lane, in front of it, does the same on its own
two paths with these functions, in its one pass over the headers (docs/performance/checkout.md,
"One layer for the checkout lane")."""

import itertools
import logging
import os
import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-correlation-id"
_CORRELATION_ID = re.compile(r"^[!-~]{1,128}$")
"""A caller's id is kept if it is 1 to 128 printable ASCII characters; else a new one is made."""
_PROCESS = os.urandom(8).hex()  # ids made by different processes never collide
_made = itertools.count()


def correlation_id(sent: str | None) -> str:
    """The caller's id if it is a good one, else a new one: unique, not secret, a random
    prefix per process and a counter (a tenth of the CPU of `uuid4`, a system call for 16
    random bytes per request)."""
    if sent is not None and _CORRELATION_ID.match(sent):
        return sent
    return f"{_PROCESS}{next(_made):016x}"


class RequestLog:
    """The request line: method, path, the peer (or past trusted proxies), status, duration.
    Made with the app, after `logs.configure` set the level, which it asks once: below INFO
    the line is not even assembled (its fields and a call through structlog's lazy proxy
    cost CPU on every request)."""

    def __init__(self) -> None:
        self._log = structlog.get_logger(__name__)
        self.enabled = bool(self._log.is_enabled_for(logging.INFO))

    def write(self, scope: Scope, status: int, started: float) -> None:
        self._log.info(
            "http.request",
            method=scope["method"],
            path=scope["path"],
            client=(scope.get("client") or ("",))[0],
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )


class Correlated:
    """Bind a correlation id to every log line of a request (clearing what an earlier request
    bound) and to every command it sends (`scope["state"]`); echo it back; log the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._requests = RequestLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(HEADER)
        correlated = correlation_id(None if sent is None else sent.decode("latin-1"))
        scope.setdefault("state", {})["correlation_id"] = correlated
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(correlation_id=correlated)
        started = time.perf_counter()
        status = 500

        async def send_correlated(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (HEADER, correlated.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_correlated)
        finally:
            if self._requests.enabled:
                self._requests.write(scope, status, started)

"""The FastAPI application: routers, error handlers, correlation ids, and the lifespan that
starts and stops the runtime."""

import itertools
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.coupons import dashboard, logs
from services.coupons.api import (
    analytics,
    api_docs,
    campaigns,
    checkout,
    codes,
    errors,
    health,
    monitoring,
    reservations,
    stripe_mirror,
    stripe_webhook,
)
from services.coupons.api import automations as automations_api
from services.coupons.api import broadcasts as broadcasts_api
from services.coupons.api import contacts as contacts_api
from services.coupons.api import segments as segments_api
from services.coupons.api import static_segments as static_segments_api
from services.coupons.api.auth import KeyCache
from services.coupons.api.body_limit import BodyLimit
from services.coupons.api.checkout_lane import CheckoutLane
from services.coupons.runtime import running
from services.coupons.settings import Settings

VERSION = "0.1.0"


def from_environment() -> ASGIApp:
    """The app of one worker process when `COUPONS_WORKERS` > 1 (each one imports it)."""
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)


def create_app(settings: Settings) -> ASGIApp:
    """FastAPI, with the checkout lane in front of it and correlation ids around both."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="GrowthOS Coupon Engine",
        version=VERSION,
        description="Campaigns, codes, validation and redemption. Event contracts: /asyncapi.json.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.key_cache = KeyCache()
    errors.install(app)
    app.include_router(health.router)
    app.include_router(campaigns.router)
    app.include_router(checkout.router)
    app.include_router(reservations.router)
    app.include_router(codes.router)
    app.include_router(stripe_webhook.router)
    app.include_router(stripe_mirror.router)
    app.include_router(analytics.router)
    app.include_router(monitoring.router)
    app.include_router(contacts_api.router)
    app.include_router(segments_api.router)
    app.include_router(static_segments_api.router)
    app.include_router(automations_api.router)
    app.include_router(broadcasts_api.router)
    api_docs.install(app)
    dashboard.install(app)
    return Correlated(BodyLimit(CheckoutLane(app), settings.max_body_bytes))


_CORRELATION_ID = re.compile(r"^[!-~]{1,128}$")
"""A caller's id is kept if it is 1 to 128 printable ASCII characters; else a new one is made."""
_PROCESS = os.urandom(8).hex()  # ids made by different processes never collide
_made = itertools.count()


def _new_correlation_id() -> str:
    """Unique, not secret: a random prefix per process and a counter, a tenth of the CPU of
    `uuid4` (a system call for 16 random bytes per request)."""
    return f"{_PROCESS}{next(_made):016x}"


class Correlated:
    """Bind a correlation id (the caller's `X-Correlation-Id`, or a new one) to every log line
    of a request and to every command it sends; echo it back; log the request. Plain ASGI
    rather than `BaseHTTPMiddleware`, which costs a task and a stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # the level is set (`logs.configure`) before the app is made, and this app's logger
        # takes it then; below INFO the request line is not even assembled: its fields and a
        # call through structlog's lazy proxy cost CPU on every request (measured:
        # docs/performance/checkout.md)
        self._log = structlog.get_logger(__name__)
        self._log_requests = self._log.is_enabled_for(logging.INFO)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-correlation-id", b"").decode("latin-1")
        correlation_id = sent if _CORRELATION_ID.match(sent) else _new_correlation_id()
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        started = time.perf_counter()
        status = 500

        async def send_correlated(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-correlation-id", correlation_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_correlated)
        finally:
            if self._log_requests:
                self._log.info(
                    "http.request",
                    method=scope["method"],
                    path=scope["path"],
                    client=(scope.get("client") or ("",))[0],  # the peer, or past trusted proxies
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )

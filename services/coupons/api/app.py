"""The FastAPI application: routers, error handlers, correlation ids, and the lifespan that
starts and stops the runtime."""

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response

from services.coupons.api import analytics, campaigns, checkout, codes, errors, health, monitoring
from services.coupons.api.auth import KeyCache
from services.coupons.api.throttle import FailureThrottle
from services.coupons.runtime import running
from services.coupons.settings import Settings

log = structlog.get_logger(__name__)

VERSION = "0.1.0"


def create_app(settings: Settings) -> FastAPI:
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
    )
    app.state.key_cache = KeyCache()
    app.state.throttle = FailureThrottle(settings.throttle_failures, settings.throttle_window_s)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(campaigns.router)
    app.include_router(checkout.router)
    app.include_router(codes.router)
    app.include_router(analytics.router)
    app.include_router(monitoring.router)
    app.middleware("http")(_correlate)
    return app


async def _correlate(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Bind a correlation id (the caller's `X-Correlation-Id`, or a new one) to every log line
    of this request and to every command it sends; echo it back."""
    correlation_id = request.headers.get("x-correlation-id") or uuid.uuid4().hex
    request.state.correlation_id = correlation_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Correlation-Id"] = correlation_id
    log.info(
        "http.request",
        method=request.method,
        path=request.url.path,
        status=response.status_code,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return response

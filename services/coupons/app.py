"""The FastAPI application: routers, error handlers, correlation ids, and the lifespan that
starts and stops the runtime."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

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
from services.coupons.api.correlation import Correlated
from services.coupons.runtime import running
from services.coupons.settings import Settings

VERSION = "0.1.0"


def from_environment() -> ASGIApp:
    """The app of one worker process when `COUPONS_WORKERS` > 1 (each one imports it)."""
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)


def create_app(settings: Settings) -> ASGIApp:
    """FastAPI behind correlation ids and the body limit, and the checkout lane in front of
    them, doing both on its own two paths."""

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
    return CheckoutLane(
        Correlated(BodyLimit(app, settings.max_body_bytes)), app.state, settings.max_body_bytes
    )

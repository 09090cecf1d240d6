"""`coupons run` and `coupons serve`: start the service."""

import os
import sys
from typing import Any

import structlog
import uvicorn

from services.coupons.settings import Settings

log = structlog.get_logger(__name__)


def start(settings: Settings) -> None:
    """One process, or `COUPONS_WORKERS` processes sharing the port: each is a full replica
    (API, campaign view, and its share of the decider and projection partitions)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": None,
        "access_log": False,
        # a shutdown waits this long for requests in flight, then closes their connections
        "timeout_graceful_shutdown": 10,
        # X-Forwarded-For is believed only from these proxies (uvicorn's own default trusts
        # it from any local client): see COUPONS_TRUSTED_PROXIES in the README
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": settings.trusted_proxies or None,
    }
    base = f"http://{settings.host}:{settings.port}"
    log.info(
        "service.starting",
        api=base,
        openapi=f"{base}/openapi.json",
        docs=f"{base}/docs",
        asyncapi=f"{base}/asyncapi.json",
    )
    print(
        f"\n  Coupon engine starting on {base}\n"
        f"    API docs (OpenAPI):  {base}/docs   ({base}/openapi.json)\n"
        f"    Event contracts:     {base}/asyncapi.json\n"
        f"    Health / readiness:  {base}/healthz  {base}/readyz\n"
        f"    An API key:          make key SCOPE=admin NAME=me   (in another terminal)\n",
        file=sys.stderr,
        flush=True,
    )
    if settings.workers == 1:
        # imported here: the app's imports take seconds, which the other commands need not pay
        from services.coupons.app import create_app

        uvicorn.Server(uvicorn.Config(create_app(settings), **options)).run()
    else:  # each worker process builds its app from the environment
        factory = "services.coupons.app:from_environment"
        # A worker answers the supervisor's pings only once its imports are done: on a busy
        # machine that takes longer than uvicorn's 5 s, and the worker would be killed.
        uvicorn.run(
            factory,
            factory=True,
            workers=settings.workers,
            timeout_worker_healthcheck=60,
            **options,
        )


def serve() -> None:
    """Serve against KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (production)."""
    start(Settings())


def run() -> None:
    """Provision a local Kafka and PostgreSQL where none is configured, then serve."""
    from services.devstack.stack import default_state_dir, provisioned

    with provisioned(
        default_state_dir(),
        kafka_port=int(os.environ.get("COUPONS_KAFKA_PORT", "19092")),
        pg_port=int(os.environ.get("COUPONS_PG_PORT", "15432")),
        database="coupons",
    ) as endpoints:
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = endpoints.kafka_bootstrap_servers
        os.environ["DATABASE_URL"] = endpoints.database_url
        start(Settings())

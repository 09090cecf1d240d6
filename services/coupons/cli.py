"""`coupons`: the command line.

- `coupons run`: provision a local Kafka and PostgreSQL where none is configured, then serve.
- `coupons serve`: serve against KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (production).
"""

import argparse
import os
import sys

import structlog
import uvicorn

from services.coupons import logs
from services.coupons.api.app import create_app
from services.coupons.settings import Settings

log = structlog.get_logger(__name__)


def serve(settings: Settings) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
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
        f"    Health / readiness:  {base}/healthz  {base}/readyz\n",
        file=sys.stderr,
        flush=True,
    )
    server.run()


def run_local() -> None:
    from services.devstack.stack import default_state_dir, provisioned

    state_dir = default_state_dir()
    with provisioned(
        state_dir,
        kafka_port=int(os.environ.get("COUPONS_KAFKA_PORT", "19092")),
        pg_port=int(os.environ.get("COUPONS_PG_PORT", "15432")),
        database="coupons",
    ) as endpoints:
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = endpoints.kafka_bootstrap_servers
        os.environ["DATABASE_URL"] = endpoints.database_url
        serve(Settings())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="coupons", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run", help="provision local Kafka/PostgreSQL if not configured, then serve"
    )
    commands.add_parser("serve", help="serve against the configured Kafka and PostgreSQL")
    args = parser.parse_args(argv)
    logs.configure(
        os.environ.get("COUPONS_LOG_LEVEL", "INFO"), os.environ.get("COUPONS_LOG_FORMAT", "json")
    )
    if args.command == "run":
        run_local()
    else:
        serve(Settings())


if __name__ == "__main__":
    main()

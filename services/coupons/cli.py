"""`coupons`: the command line.

- `coupons run`: provision a local Kafka and PostgreSQL where none is configured, then serve.
- `coupons serve`: serve against KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (production).
- `coupons keys create --scope admin|checkout|analyst --name NAME`: print a new API key.
- `coupons keys revoke KEY_ID`.
- `coupons stripe reconcile --since DATE [--repair]`: Stripe's paid invoices against our ledger.
- `coupons projections rebuild [NAME ...]`: replay the event topic into fresh tables, swap.
"""

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import structlog
import uvicorn

from services.coupons import logs
from services.coupons.api.app import create_app
from services.coupons.settings import Settings
from services.coupons.store import api_keys
from services.coupons.store.migrate import migrate
from services.coupons.stripe import cli as stripe_cli

log = structlog.get_logger(__name__)


def serve(settings: Settings) -> None:
    """One process, or `COUPONS_WORKERS` processes sharing the port: each is a full replica
    (API, campaign view, and its share of the decider and projection partitions)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": None,
        "access_log": False,
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
        uvicorn.Server(uvicorn.Config(create_app(settings), **options)).run()
    else:  # each worker process builds its app from the environment
        factory = "services.coupons.api.app:from_environment"
        # A worker answers the supervisor's pings only once its imports are done: on a busy
        # machine that takes longer than uvicorn's 5 s, and the worker would be killed.
        uvicorn.run(
            factory,
            factory=True,
            workers=settings.workers,
            timeout_worker_healthcheck=60,
            **options,
        )


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


def database_url() -> str:
    """DATABASE_URL, or the database of the local stack `make run` is running."""
    if url := os.environ.get("DATABASE_URL"):
        return url
    from services.devstack.stack import ENDPOINTS_FILE, default_state_dir

    running = Path(default_state_dir()) / ENDPOINTS_FILE
    if running.exists():
        return str(json.loads(running.read_text())["database_url"])
    raise SystemExit("set DATABASE_URL, or start the local stack with `make run` first")


async def keys(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(database_url())
    try:
        await migrate(conn)
        if args.action == "create":
            key, secret = await api_keys.create(conn, args.name, args.scope)
            print(f"# {key.id} ({key.name}), scope {key.scope}: shown once, store it now")
            print(secret)
        elif not await api_keys.revoke(conn, args.key_id):
            raise SystemExit(f"no active key {args.key_id}")
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="coupons", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="provision local Kafka and PostgreSQL if needed, then serve")
    commands.add_parser("serve", help="serve against the configured Kafka and PostgreSQL")
    key_commands = commands.add_parser("keys", help="create or revoke API keys").add_subparsers(
        dest="action", required=True
    )
    create = key_commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--scope", choices=api_keys.SCOPES, required=True)
    create.add_argument("--name", required=True, help="who or what uses it, for the audit trail")
    key_commands.add_parser("revoke", help="revoke a key by id").add_argument("key_id")
    stripe_cli.add_parser(commands)
    projection_commands = commands.add_parser(
        "projections", help="maintain the read models"
    ).add_subparsers(dest="action", required=True)
    projection_commands.add_parser(
        "rebuild", help="replay the event topic into fresh tables and swap them in"
    ).add_argument("names", nargs="*", metavar="NAME", help="default: every rebuildable one")
    args = parser.parse_args(argv)
    logs.configure(
        os.environ.get("COUPONS_LOG_LEVEL", "INFO"), os.environ.get("COUPONS_LOG_FORMAT")
    )
    if args.command == "run":
        run_local()
    elif args.command == "keys":
        asyncio.run(keys(args))
    elif args.command == "stripe":
        sys.exit(asyncio.run(stripe_cli.run(args)))
    elif args.command == "projections":
        import uvloop

        from services.coupons.rebuilds import rebuild_projections

        # uvloop, as `serve` uses: about a tenth less CPU per replayed event than asyncio's loop.
        for rebuilt in uvloop.run(rebuild_projections(Settings(), args.names)):
            print(
                f"{rebuilt.projection}: {rebuilt.events} events in {rebuilt.seconds:.1f} s"
                f" ({rebuilt.skipped} unreadable skipped)"
            )
    else:
        serve(Settings())


if __name__ == "__main__":
    main()

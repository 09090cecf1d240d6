"""`coupons stripe reconcile --since DATE [--until DATE] [--repair]`: see reconcile.py.

Reads STRIPE_API_KEY (and STRIPE_API_BASE), DATABASE_URL, and for `--repair`
KAFKA_BOOTSTRAP_SERVERS. Prints one JSON report; exits 1 when anything is left unreconciled."""

import argparse
import contextlib
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from contracts.topics import declare
from services.coupons.bus.gateway import CommandGateway
from services.coupons.bus.topics import ensure_topics
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate
from services.coupons.stripe.client import client_for, paid_invoices
from services.coupons.stripe.reconcile import reconcile
from services.coupons.stripe.translate import Translator


def _day(text: str) -> datetime:
    return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    stripe = commands.add_parser("stripe", help="the Stripe bridge").add_subparsers(
        dest="action", required=True
    )
    check = stripe.add_parser("reconcile", help="compare Stripe's paid invoices with our ledger")
    check.add_argument("--since", type=_day, required=True, help="first day, YYYY-MM-DD (UTC)")
    check.add_argument("--until", type=_day, help="day after the last (default: tomorrow)")
    check.add_argument("--repair", action="store_true", help="record the missing redemptions")


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    until = args.until or _day((datetime.now(UTC) + timedelta(days=1)).date().isoformat())
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    async with pool, contextlib.AsyncExitStack() as stack:
        async with pool.acquire() as conn:
            await migrate(conn)
        translator = None
        if args.repair:
            topics = declare(settings.topic_prefix, settings.partitions)
            bootstrap = settings.kafka_bootstrap_servers
            layout = await ensure_topics(bootstrap, topics, settings.replication_factor)
            gateway = CommandGateway(bootstrap, topics, layout, settings.command_timeout_s)
            await gateway.start()
            stack.push_async_callback(gateway.stop)
            translator = Translator(gateway.decide)
        invoices = paid_invoices(client_for(settings), args.since, until)
        report = await reconcile(pool, invoices, args.since, until, translator)
    print(report.to_json())
    return 0 if all(f.repaired for f in report.findings) else 1

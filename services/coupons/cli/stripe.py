"""`coupons stripe reconcile`: Stripe's paid invoices against our ledger (see reconcile.py).

Reads STRIPE_API_KEY (and STRIPE_API_BASE), DATABASE_URL, and for `--repair`
KAFKA_BOOTSTRAP_SERVERS. Each run and its findings are recorded in PostgreSQL (the dashboard's
Operations page shows the last). Exits 1 when anything is left unreconciled."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts.topics import declare
from services.coupons.bus.gateway import CommandGateway
from services.coupons.bus.topics import ensure_topics
from services.coupons.settings import Settings
from services.coupons.store import reconciliations
from services.coupons.store.migrate import migrate
from services.coupons.stripe.client import client_for, paid_invoices
from services.coupons.stripe.reconcile import Report, reconcile

app = typer.Typer(help="The Stripe bridge (on DATABASE_URL and Stripe's API).")


def _day(text: str) -> datetime:
    return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)


async def _counted(
    invoices: AsyncIterator[dict[str, Any]], progress: Progress
) -> AsyncIterator[dict[str, Any]]:
    task = progress.add_task("Stripe invoices read", total=None)
    async for invoice in invoices:
        progress.advance(task)
        yield invoice


async def _run(since: datetime, until: datetime, repair: bool, progress: Progress) -> Report:
    from services.coupons.stripe.translate import Translator

    settings = Settings()
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    async with pool, contextlib.AsyncExitStack() as stack:
        async with pool.acquire() as conn:
            await migrate(conn)
        translator = None
        if repair:
            topics = declare(settings.topic_prefix, settings.partitions)
            bootstrap = settings.kafka_bootstrap_servers
            layout = await ensure_topics(bootstrap, topics, settings.replication_factor)
            gateway = CommandGateway(bootstrap, topics, layout, settings.command_timeout_s)
            await gateway.start()
            stack.push_async_callback(gateway.stop)
            translator = Translator(gateway.decide)
        invoices = _counted(paid_invoices(client_for(settings), since, until), progress)
        report = await reconcile(pool, invoices, since, until, translator)
        async with pool.acquire() as conn:
            await reconciliations.record(conn, report, since, until, repair)
        return report


def report_table(report: Report) -> Table:
    table = Table(
        "order",
        "finding",
        "detail",
        "repaired",
        title=f"{report.invoices} invoices, {report.matched} matched",
    )
    for finding in report.findings:
        table.add_row(finding.order_ref, finding.kind, finding.detail, str(finding.repaired))
    return table


@app.command("reconcile")
def reconcile_command(
    since: Annotated[str, typer.Option(help="first day, YYYY-MM-DD (UTC)")],
    until: Annotated[
        str | None, typer.Option(help="day after the last (default: tomorrow)")
    ] = None,
    repair: Annotated[bool, typer.Option(help="record the missing redemptions")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON report")] = False,
) -> None:
    """Compare Stripe's paid invoices with our ledger; exit 1 if anything is unreconciled."""
    try:
        first = _day(since)
        end = _day(until or (datetime.now(UTC) + timedelta(days=1)).date().isoformat())
    except ValueError as error:
        from services.coupons.cli import api

        api.fail("bad_arguments", f"a day is YYYY-MM-DD: {error}")
    typer.echo("database: DATABASE_URL; Stripe: STRIPE_API_BASE or api.stripe.com", err=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}: {task.completed}"))
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as progress:
        report = asyncio.run(_run(first, end, repair, progress))
    if as_json:
        typer.echo(report.to_json())
    else:
        Console().print(report_table(report))
    if not all(f.repaired for f in report.findings):
        raise typer.Exit(1)

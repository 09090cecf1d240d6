"""The ledger's running totals (`ledger_daily`, `ledger_campaigns`) equal the sums of the
ledger itself (`analytics.campaign_attribution_daily`) after a mixed workload of
distributions, redemptions, reversals and refunds applied in batches of every size, and the
migration that adds them fills them from an existing ledger."""

from collections.abc import Iterator
from itertools import islice
from typing import Any

import asyncpg
import pytest

from contracts.envelope import Envelope
from contracts.events import Event
from projections import ledger
from services.coupons.settings import Settings
from services.coupons.store.migrate import discover, migrate
from services.devstack.workload import mixed_events

pytestmark = pytest.mark.integration

FIGURES = "distributed, redeemed, reversals, gross_revenue, discount_given, net_revenue, refunded"


def batches(events: Iterator[Envelope[Event]]) -> Iterator[list[Envelope[Event]]]:
    size = 1
    while batch := list(islice(events, size)):
        yield batch
        size = size % 97 + 13  # 1, 14, 27, ... : a reversal sometimes in its redemption's batch


async def daily_from_ledger(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        f"""SELECT campaign_id, day, channel, coalesce(source_ref, ''), {FIGURES}
            FROM analytics.campaign_attribution_daily ORDER BY 1, 2, 3, 4"""
    )
    return [tuple(r) for r in rows]


async def daily_totals(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        f"""SELECT campaign_id, day, channel, source_ref, {FIGURES} FROM ledger_daily
            ORDER BY 1, 2, 3, 4"""
    )
    return [tuple(r) for r in rows]


async def campaign_totals(conn: asyncpg.Connection) -> tuple[list[Any], list[Any]]:
    summed = await conn.fetch(
        f"""SELECT campaign_id, {", ".join(f"sum({c})::bigint" for c in FIGURES.split(", "))}
            FROM analytics.campaign_attribution_daily GROUP BY 1 ORDER BY 1"""
    )
    kept = await conn.fetch(f"SELECT campaign_id, {FIGURES} FROM ledger_campaigns ORDER BY 1")
    return [tuple(r) for r in summed], [tuple(r) for r in kept]


async def test_totals_equal_the_ledgers_sums(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        for batch in batches(mixed_events(6000, campaigns=5)):
            async with conn.transaction():
                await ledger.apply(conn, batch)
        expected = await daily_from_ledger(conn)
        assert {r[6] for r in expected} != {0}, "the workload reversed nothing"
        assert any(r[10] for r in expected), "the workload refunded nothing"
        assert await daily_totals(conn) == expected
        summed, kept = await campaign_totals(conn)
        assert kept == summed and len(kept) == 5
    finally:
        await conn.close()


async def test_the_migration_fills_the_totals_from_an_existing_ledger(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        for batch in batches(mixed_events(2000, campaigns=3)):
            async with conn.transaction():
                await ledger.apply(conn, batch)
        await conn.execute("TRUNCATE ledger_daily, ledger_campaigns")  # as before 0056
        (added,) = [m for m in discover() if m.version == 56]
        await conn.execute(added.sql[added.sql.index("INSERT INTO") :])  # its backfill
        assert await daily_totals(conn) == await daily_from_ledger(conn)
        summed, kept = await campaign_totals(conn)
        assert kept == summed and len(kept) == 3
    finally:
        await conn.close()

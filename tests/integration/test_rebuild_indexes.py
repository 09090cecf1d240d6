"""A rebuild replays into shadow tables that carry only the indexes the projection's `apply`
declares it relies on; the swap still gives the live tables every index, and a projection
naming an index that does not exist is refused before anything is written."""

import dataclasses
from collections.abc import Sequence

import asyncpg
import pytest

from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topics import declare
from projections.db import Connection
from projections.rebuild import rebuild
from services.coupons.bus.topics import ensure_topics
from services.coupons.rebuilds import REBUILDABLE
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate
from tests.integration.helpers import send

pytestmark = pytest.mark.integration


async def test_shadow_tables_carry_only_the_declared_indexes(settings: Settings) -> None:
    topics = declare(settings.topic_prefix, settings.partitions)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    await send(settings, 300, seed=5)
    ledger = REBUILDABLE["ledger"]
    seen: list[set[str]] = []

    async def apply(conn: Connection, envelopes: Sequence[Envelope[Event]]) -> None:
        # The rebuild applies with search_path = its shadow schema.
        found = await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
        seen.append({r["indexname"] for r in found})
        await ledger.apply(conn, envelopes)

    watched = dataclasses.replace(ledger, apply=apply)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        live = await _indexes(pool, ledger.tables)
        rebuilt = await rebuild(
            watched, settings.kafka_bootstrap_servers, topics, pool, settings.partitions
        )
        assert rebuilt.events > 300
        assert seen and all(names == set(ledger.indexes) for names in seen), seen
        assert set(ledger.indexes) < live  # some were left out of the replay ...
        assert await _indexes(pool, ledger.tables) == live  # ... and all are back
        assert await pool.fetchval("SELECT count(*) FROM ledger") > 0
        assert not await pool.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild_%'"
        )
    finally:
        await pool.close()


async def test_a_projection_relying_on_an_unknown_index_is_refused(settings: Settings) -> None:
    topics = declare(settings.topic_prefix, settings.partitions)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    await send(settings, 50, seed=6)
    ledger = REBUILDABLE["ledger"]
    # A name that does not exist, and one of another projection's table.
    broken = dataclasses.replace(
        ledger, indexes=(*ledger.indexes, "ledger_by_nothing", "contact_coupons_by_contact")
    )
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        with pytest.raises(ValueError, match="ledger_by_nothing") as refused:
            await rebuild(broken, settings.kafka_bootstrap_servers, topics, pool, 3)
        assert "contact_coupons_by_contact" in str(refused.value)
        assert await pool.fetchval("SELECT count(*) FROM projection_offsets") == 0
        assert not await pool.fetchval("SELECT to_regnamespace('rebuild_ledger')::text")
        # The lock was released: a correct rebuild runs next.
        assert (await rebuild(ledger, settings.kafka_bootstrap_servers, topics, pool, 3)).events
    finally:
        await pool.close()


async def _indexes(pool: asyncpg.Pool, tables: tuple[str, ...]) -> set[str]:
    found = await pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY($1)",
        list(tables),
    )
    return {r["indexname"] for r in found}

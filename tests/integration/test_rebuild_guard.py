"""Two rebuilds of the same projection at once: the second is refused with a clear error
instead of dropping the first's shadow tables under it; the first's rows are whole."""

import asyncio

import asyncpg
import pytest

from contracts.topics import declare
from projections.rebuild import RebuildRunning, rebuild
from services.coupons.bus.topics import ensure_topics
from services.coupons.rebuilds import REBUILDABLE, rebuild_projections
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate
from tests.integration.helpers import send

pytestmark = pytest.mark.integration


async def test_a_second_rebuild_of_the_same_projection_is_refused(settings: Settings) -> None:
    topics = declare(settings.topic_prefix, settings.partitions)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    await send(settings, 300, seed=3)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=6)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        contacts = REBUILDABLE["contacts"]
        bootstrap = settings.kafka_bootstrap_servers
        first, second = await asyncio.gather(
            rebuild(contacts, bootstrap, topics, pool, settings.partitions),
            rebuild(contacts, bootstrap, topics, pool, settings.partitions),
            return_exceptions=True,
        )
        refused = [r for r in (first, second) if isinstance(r, BaseException)]
        assert len(refused) == 1, (first, second)
        assert isinstance(refused[0], RebuildRunning)
        assert "a rebuild of contacts is already running" in str(refused[0])
        rows = await pool.fetchval("SELECT count(*) FROM contact_coupons")
        assert rows > 0

        # Another projection is not held up, and once the first is done the lock is free.
        ledger = REBUILDABLE["ledger"]
        await asyncio.gather(
            rebuild(contacts, bootstrap, topics, pool, settings.partitions),
            rebuild(ledger, bootstrap, topics, pool, settings.partitions),
        )
        assert await pool.fetchval("SELECT count(*) FROM contact_coupons") == rows

        async with pool.acquire() as holder:
            await holder.execute("SELECT pg_advisory_lock(hashtext('rebuild:usage'))")
            with pytest.raises(SystemExit, match="a rebuild of usage is already running"):
                await rebuild_projections(settings, ["usage"], show_progress=False)
    finally:
        await pool.close()

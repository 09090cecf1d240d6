"""A segment's size (migration 0062's triggers and `contacts/segment_sizes.py`'s fold) equals
its members counted, whoever adds or removes them and however the statements interleave."""

import asyncio
import random

import asyncpg
import pytest

from services.coupons.contacts import segment_sizes
from services.coupons.contacts.segment_sizes import SegmentSizes
from services.coupons.settings import Settings

pytestmark = pytest.mark.integration

SEGMENTS = ("a", "b", "c")


async def sizes(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(f"SELECT s.id, {segment_sizes.SIZE} AS size FROM segments s")
    return {r["id"]: r["size"] for r in rows}


async def counted(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT s.id, (SELECT count(*) FROM segment_members m WHERE m.segment_id = s.id) AS n
           FROM segments s"""
    )
    return {r["id"]: r["n"] for r in rows}


async def test_sizes_follow_inserts_deletes_conflicts_truncates_and_folds(
    settings: Settings,
) -> None:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            for s in SEGMENTS:
                await conn.execute(
                    "INSERT INTO segments (id, name, kind) VALUES ($1, $1, 'static')", s
                )
            rng = random.Random(7)
            folder = SegmentSizes(pool)
            for step in range(60):
                segment = rng.choice(SEGMENTS)
                contacts = [f"c{rng.randrange(200)}" for _ in range(rng.randrange(1, 40))]
                if rng.random() < 0.6:  # repeats and existing members: ON CONFLICT skips them
                    await conn.execute(
                        """INSERT INTO segment_members (segment_id, contact_id, version)
                           SELECT $1, unnest($2::text[]), 1 ON CONFLICT DO NOTHING""",
                        segment,
                        contacts,
                    )
                else:
                    await conn.execute(
                        """DELETE FROM segment_members
                           WHERE segment_id = $1 AND contact_id = ANY($2::text[])""",
                        segment,
                        contacts,
                    )
                if step % 7 == 0:
                    await folder.fold()
                assert await sizes(conn) == await counted(conn)
            assert max((await counted(conn)).values()) > 0
            await folder.fold()
            assert await conn.fetchval("SELECT count(*) FROM segment_size_changes") == 0
            assert await sizes(conn) == await counted(conn)
            await conn.execute("TRUNCATE segment_members")
            assert await sizes(conn) == {s: 0 for s in SEGMENTS}
    finally:
        await pool.close()


async def test_concurrent_writers_to_one_segment_do_not_wait_on_each_other(
    settings: Settings,
) -> None:
    first = await asyncpg.connect(settings.database_url)
    second = await asyncpg.connect(settings.database_url)
    try:
        await first.execute("INSERT INTO segments (id, name, kind) VALUES ('a', 'a', 'static')")
        add = "INSERT INTO segment_members (segment_id, contact_id, version) VALUES ('a', $1, 1)"
        one = first.transaction()
        await one.start()
        await first.execute(add, "x")
        # the first transaction is still open: the second commits without waiting for it
        await asyncio.wait_for(second.execute(add, "y"), timeout=5)
        assert await sizes(second) == {"a": 1}
        await one.commit()
        assert await sizes(second) == {"a": 2}
    finally:
        await first.close()
        await second.close()

"""Backfill: evaluates a new or changed segment over the existing profiles, in pages of
contact ids, as a background job with visible progress (`segment_backfills`: done of total).

Each page (its profiles locked in id order, like every writer) is reconciled against every
live segment, so the contact's one timer stays the earliest of all, and the job's cursor
moves in the same transaction: a crash resumes at the page after the last committed one.
A job whose segment moved to a newer version, or was archived, is dropped as superseded."""

import asyncio
import time

import asyncpg
import structlog

from projections.db import Connection
from services.coupons.contacts import store

log = structlog.get_logger(__name__)

PAGE = 1000
IDLE_S = 1.0


async def start(conn: Connection, segment_id: str, version: int) -> None:
    """Queue the backfill of `segment_id` at `version`, inside the caller's transaction."""
    await conn.execute(
        """INSERT INTO segment_backfills (segment_id, version, total)
           SELECT $1, $2, count(*) FROM contact_profiles ON CONFLICT DO NOTHING""",
        segment_id,
        version,
    )


class BackfillRunner:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def run(self) -> None:
        while True:
            if not await self.step():
                await asyncio.sleep(IDLE_S)

    async def step(self) -> bool:
        """Backfill one page of the oldest unfinished job; False when there is none."""
        async with self._pool.acquire() as conn, conn.transaction():
            job = await conn.fetchrow(
                """SELECT b.segment_id, b.version, b.after, s.version AS current, s.status
                   FROM segment_backfills b JOIN segments s ON s.id = b.segment_id
                   WHERE NOT b.finished ORDER BY b.started_at LIMIT 1
                   FOR UPDATE OF b SKIP LOCKED"""
            )
            if job is None:
                return False
            key = (job["segment_id"], job["version"])
            if job["current"] != job["version"] or job["status"] != "active":
                await _finish(conn, key)
                return True
            ids = [
                r["contact_id"]
                for r in await conn.fetch(
                    """SELECT contact_id FROM contact_profiles WHERE contact_id > $1
                       ORDER BY contact_id LIMIT $2""",
                    job["after"],
                    PAGE,
                )
            ]
            if not ids:
                await _finish(conn, key)
                log.info("contacts.backfilled", segment_id=key[0], version=key[1])
                return True
            profiles = await store.lock_profiles(conn, ids)
            cause = f"backfill:{key[0]}:{key[1]}"
            segments = await store.live_segments(conn)
            causes = dict.fromkeys(profiles, cause)
            await store.settle(conn, profiles, segments, causes, int(time.time()), save=False)
            await conn.execute(
                """UPDATE segment_backfills SET after = $3, done = done + $4, updated_at = now()
                   WHERE segment_id = $1 AND version = $2""",
                *key,
                ids[-1],
                len(ids),
            )
        return True


async def _finish(conn: Connection, key: tuple[str, int]) -> None:
    await conn.execute(
        """UPDATE segment_backfills SET finished = true, updated_at = now()
           WHERE segment_id = $1 AND version = $2""",
        *key,
    )

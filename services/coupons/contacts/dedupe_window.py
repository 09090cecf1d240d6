"""Keeps `contact_event_ids` (the applied event ids, for dedupe) to a window: ids applied more
than `COUPONS_CONTACT_DEDUPE_DAYS` days ago are deleted, in batches, once an hour. A sender
that redelivers an event within the window has it skipped; after it, it would be applied
again (the window is the dedupe guarantee, like Stripe's idempotency keys)."""

import asyncio

import asyncpg
import structlog

log = structlog.get_logger(__name__)

EVERY_S = 3600.0
BATCH = 10_000


class DedupeWindow:
    def __init__(self, pool: asyncpg.Pool, days: int) -> None:
        self._pool = pool
        self._days = days

    async def run(self) -> None:
        while True:
            await self.prune()
            await asyncio.sleep(EVERY_S)

    async def prune(self) -> int:
        """Delete the ids past the window; how many."""
        total: int = 0
        while True:
            async with self._pool.acquire() as conn:
                deleted = await conn.fetchval(
                    """WITH old AS (
                           DELETE FROM contact_event_ids WHERE event_id IN (
                               SELECT event_id FROM contact_event_ids
                               WHERE applied_at < now() - make_interval(days => $1) LIMIT $2)
                           RETURNING 1)
                       SELECT count(*) FROM old""",
                    self._days,
                    BATCH,
                )
            total += int(deleted)
            if deleted < BATCH:
                break
        if total:
            log.info("contacts.dedupe_pruned", ids=total)
        return total

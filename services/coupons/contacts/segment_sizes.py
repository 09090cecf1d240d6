"""Segment sizes kept without counting members (migration 0062): PostgreSQL's triggers append
each statement's net change per segment to `segment_size_changes`; a size is the segment's
`size_base` plus its changes not folded yet. `SegmentSizes` folds the changes into the base
every `EVERY_S`, so a read sums a handful of rows whatever the segment's size."""

import asyncio

import asyncpg

EVERY_S = 5.0

SIZE = """(s.size_base + coalesce(
              (SELECT sum(c.n) FROM segment_size_changes c WHERE c.segment_id = s.id), 0)
          )::bigint"""
"""A segment's size, as an SQL expression over `segments s`."""


class SegmentSizes:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def run(self) -> None:
        while True:
            await self.fold()
            await asyncio.sleep(EVERY_S)

    async def fold(self) -> None:
        """Move the changes into the bases in one statement: a read sees either the changes
        or the new base, never both; a change appended meanwhile waits for the next fold."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                """WITH moved AS (DELETE FROM segment_size_changes RETURNING segment_id, n),
                        sums AS (SELECT segment_id, sum(n) AS n FROM moved GROUP BY segment_id)
                   UPDATE segments s SET size_base = s.size_base + sums.n
                   FROM sums WHERE s.id = sums.segment_id"""
            )

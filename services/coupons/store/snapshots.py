"""Writer snapshots in PostgreSQL (migration 0052): chunks first, then the row that makes them
a snapshot, then the older ones pruned (two are kept per partition).

Why PostgreSQL rather than a compacted topic: a snapshot is large (megabytes to gigabytes of
chunks) and replaced as a whole, which a compacted topic does with one message per chunk key
and no atomic switch between generations, and with a record size limit to tune on the broker;
here the switch is one row, a reader verifies chunk by chunk, and old generations are deleted
outright. Every process that folds the events (deciders, campaign views) already holds a pool.
A snapshot is only an optimisation: lose the table and the state is folded from offset 0.
"""

from collections.abc import AsyncIterator

import asyncpg

from projections.db import DATABASE_UNAVAILABLE
from services.coupons.writer.snapshot_codec import Chunk, Kind
from services.coupons.writer.snapshots import Header, StoreUnavailable

KEEP = 2


class PostgresSnapshots:
    """The snapshot port (`writer.snapshots.Store`) over a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save(
        self,
        topic: str,
        partition: int,
        next_offset: int,
        consumed: int,
        version: str,
        chunks: AsyncIterator[Chunk],
    ) -> Header:
        """Write the chunks one statement each (the caller's loop runs between them), then
        the row, and prune the older snapshots and any chunks left without a row."""
        async with self._pool.acquire() as conn:
            snapshot_id = await conn.fetchval("SELECT nextval('state_snapshot_ids')")
            counts = {"state": 0, "memo": 0}
            size = 0
            async for chunk in chunks:
                await conn.execute(
                    """INSERT INTO state_snapshot_chunks
                           (snapshot_id, topic, partition, kind, seq, checksum, body)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                    snapshot_id,
                    topic,
                    partition,
                    chunk.kind,
                    sum(counts.values()),
                    chunk.checksum,
                    chunk.body,
                )
                counts[chunk.kind] += 1
                size += len(chunk.body)
            async with conn.transaction():
                await conn.execute(
                    """INSERT INTO state_snapshots (id, topic, partition, next_offset, consumed,
                           version, state_chunks, memo_chunks, bytes)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
                    snapshot_id,
                    topic,
                    partition,
                    next_offset,
                    consumed,
                    version,
                    counts["state"],
                    counts["memo"],
                    size,
                )
                await conn.execute(
                    """DELETE FROM state_snapshots WHERE topic = $1 AND partition = $2
                         AND id NOT IN (SELECT id FROM state_snapshots
                                        WHERE topic = $1 AND partition = $2
                                        ORDER BY next_offset DESC, id DESC LIMIT $3)""",
                    topic,
                    partition,
                    KEEP,
                )
                await conn.execute(
                    """DELETE FROM state_snapshot_chunks c WHERE topic = $1 AND partition = $2
                         AND snapshot_id < $3
                         AND NOT EXISTS (SELECT 1 FROM state_snapshots s
                                         WHERE s.id = c.snapshot_id)""",
                    topic,
                    partition,
                    snapshot_id,
                )
        return Header(snapshot_id, next_offset, consumed, version, counts["state"], counts["memo"])

    async def headers(self, topic: str, partition: int) -> list[Header]:
        """The partition's snapshots, the furthest first."""
        try:
            return await self._headers(topic, partition)
        except DATABASE_UNAVAILABLE as error:
            raise StoreUnavailable(repr(error)) from error

    async def _headers(self, topic: str, partition: int) -> list[Header]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT id, next_offset, consumed, version, state_chunks, memo_chunks
                   FROM state_snapshots WHERE topic = $1 AND partition = $2
                   ORDER BY next_offset DESC, id DESC""",
                topic,
                partition,
            )
        return [Header(**dict(row)) for row in rows]

    async def chunks(self, header: Header, kind: Kind) -> AsyncIterator[tuple[bytes, bytes]]:
        """A snapshot's chunks of one kind, in order, as (body, checksum); streamed."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                async for row in conn.cursor(
                    """SELECT body, checksum FROM state_snapshot_chunks
                       WHERE snapshot_id = $1 AND kind = $2 ORDER BY seq""",
                    header.id,
                    kind,
                    prefetch=4,
                ):
                    yield row["body"], row["checksum"]
        except DATABASE_UNAVAILABLE as error:
            raise StoreUnavailable(repr(error)) from error

"""Where a consumer of ours resumes: offsets kept in PostgreSQL, beside the rows they produced.

A consumer that writes rows stores `(name, topic, partition) -> next offset` in
`projection_offsets`, in the same transaction as its rows, and advances it only by
compare-and-set: if another consumer (a zombie, or a rebuild) moved it, the transaction fails
with `LostOwnership` and nothing is written twice. Kafka's own committed offsets are not used.
On assignment the consumer seeks to the stored offsets, and until then ignores the partition's
records.
"""

from typing import Any, Protocol

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from projections.db import Connection

log = structlog.get_logger(__name__)


class LostOwnership(RuntimeError):
    """Another consumer advanced this partition's offset: our batch must not commit."""


async def stored_offsets(conn: Connection, name: str, topic: str) -> dict[int, int]:
    rows = await conn.fetch(
        """SELECT partition, next_offset FROM projection_offsets
           WHERE projection = $1 AND topic = $2""",
        name,
        topic,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


class StoredOffsets:
    def __init__(self, pool: asyncpg.Pool, name: str, topic: str) -> None:
        self._pool = pool
        self._name = name
        self._topic = topic
        # next offset per owned partition, as stored; a partition is absent until its
        # assignment has loaded this from PostgreSQL and sought the consumer to it
        self._next: dict[int, int] = {}
        self.rebalance_error: Exception | None = None
        """A failure in the rebalance listener, for the run loop to raise (aiokafka would
        log and swallow it)."""

    def next_offset(self, partition: int) -> int | None:
        return self._next.get(partition)

    def unseen(
        self, partition: int, records: list[ConsumerRecord[Any, Any]]
    ) -> tuple[int, list[ConsumerRecord[Any, Any]]] | None:
        """The stored next offset and the records from it on; None while the partition's
        assignment has not been sought yet (the seek re-reads whatever was fetched before)."""
        expected = self._next.get(partition)
        if expected is None:
            return None
        return expected, [r for r in records if r.offset >= expected]

    def listener(self, consumer: AIOKafkaConsumer) -> ConsumerRebalanceListener:
        return SeekOnAssignment(self, consumer)

    async def seek(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """Load the stored offsets (creating rows at 0 for new partitions), seek to them, and
        only then accept records of these partitions."""
        stored = await self.load(assigned)
        for tp, offset in stored.items():
            consumer.seek(tp, offset)
        self.accept(stored)

    async def load(self, assigned: set[TopicPartition]) -> dict[TopicPartition, int]:
        """The stored offsets of `assigned` (rows at 0 for new partitions); their records are
        ignored until `accept`, once the consumer has sought to them."""
        for tp in assigned:
            self._next.pop(tp.partition, None)
        async with self._pool.acquire() as conn:
            await conn.executemany(
                """INSERT INTO projection_offsets (projection, topic, partition, next_offset)
                   VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING""",
                [(self._name, self._topic, tp.partition) for tp in assigned],
            )
            stored = await stored_offsets(conn, self._name, self._topic)
        log.info("offsets.assigned", consumer=self._name, stored=stored)
        return {tp: stored[tp.partition] for tp in assigned}

    def accept(self, sought: dict[TopicPartition, int]) -> None:
        """Take the records of partitions the consumer has sought to their `load`ed offsets."""
        for tp, offset in sought.items():
            self._next[tp.partition] = offset

    async def moved(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        """The partitions whose stored offsets moved under us (a rebuild moves them). With new
        records the compare-and-set notices; on a quiet partition only this does."""
        async with self._pool.acquire() as conn:
            stored = await stored_offsets(conn, self._name, self._topic)
        moved = {
            tp
            for tp in consumer.assignment()
            if tp.partition in self._next and stored.get(tp.partition) != self._next[tp.partition]
        }
        if moved:
            log.warning("offsets.moved", consumer=self._name)
        return moved

    def forget(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._next.pop(tp.partition, None)

    async def advance(self, conn: Connection, moves: dict[int, tuple[int, int]]) -> None:
        """Move each partition's stored offset, `{partition: (expected, to)}`, in one statement
        inside the caller's transaction, or raise LostOwnership when one is not at `expected`
        any more. Call `advanced` once the transaction committed."""
        await advance_all(conn, self._topic, {self._name: moves})

    def advanced(self, partition: int, to: int) -> None:
        self._next[partition] = to


async def advance_all(
    conn: Connection, topic: str, moves: dict[str, dict[int, tuple[int, int]]]
) -> None:
    """Move stored offsets, `{name: {partition: (expected, to)}}`, in one statement inside the
    caller's transaction, or raise LostOwnership when any is not at `expected` any more."""
    rows = [
        (name, p, expected, to) for name, ps in moves.items() for p, (expected, to) in ps.items()
    ]
    moved = await conn.fetchval(
        """WITH moved AS (
               UPDATE projection_offsets o SET next_offset = m.next_offset, updated_at = now()
               FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[])
                    AS m(projection, partition, expected, next_offset)
               WHERE o.projection = m.projection AND o.topic = $1 AND o.partition = m.partition
                 AND o.next_offset = m.expected
               RETURNING 1)
           SELECT count(*) FROM moved""",
        topic,
        *(list(column) for column in zip(*rows, strict=True)),
    )
    if moved != len(rows):
        raise LostOwnership(f"{topic} is not at {moves} any more")


class KeepsRebalanceError(Protocol):
    """A consumer's owner that keeps what its rebalance listener failed on, for its run loop to
    raise (aiokafka would log and swallow it)."""

    rebalance_error: Exception | None


class Seeks(KeepsRebalanceError, Protocol):
    """Where a consumer resumes: `StoredOffsets`, or a runner holding several of them."""

    async def seek(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None: ...

    def forget(self, revoked: set[TopicPartition]) -> None: ...


def raise_rebalance_error(offsets: KeepsRebalanceError) -> None:
    """Raise what the rebalance listener kept, and forget it: a component restarted after it
    must not fail again on the same, stale error (a PostgreSQL restart once kept the projector
    and the Stripe translator crashing for as long as they ran)."""
    error, offsets.rebalance_error = offsets.rebalance_error, None
    if error is not None:
        raise error


class SeekOnAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks assigned partitions to their stored offsets and forgets revoked ones; a failure is
    kept in `rebalance_error` for the run loop to raise (aiokafka would log and swallow it)."""

    def __init__(self, offsets: Seeks, consumer: AIOKafkaConsumer) -> None:
        self._offsets = offsets
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._offsets.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self._offsets.seek(self._consumer, assigned)
        except Exception as error:  # noqa: BLE001 - re-raised by the run loop
            self._offsets.rebalance_error = error

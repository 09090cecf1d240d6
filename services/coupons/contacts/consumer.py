"""A consumer whose position is kept in PostgreSQL beside what it writes: per poll, the stored
offsets of the partitions read (compare-and-set, projections/offsets.py) and the rows its
`apply` writes commit in ONE transaction, so a redelivered record is never applied twice.
Used by the contacts processor (lifecycle events) and the coupon facts (our event log), each
under its own offsets name and consumer group."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from projections.db import Connection
from projections.offsets import (
    LostOwnership,
    SeekOnAssignment,
    StoredOffsets,
    raise_rebalance_error,
)
from services.coupons.bus import kafka

log = structlog.get_logger(__name__)

T = TypeVar("T")
Records = Sequence[ConsumerRecord[Any, Any]]


class OffsetConsumer(Generic[T]):
    def __init__(
        self,
        name: str,
        topic: str,
        bootstrap: str,
        pool: asyncpg.Pool,
        decode: Callable[[AIOKafkaProducer, Records], Awaitable[list[T]]],
        apply: Callable[[Connection, list[T]], Awaitable[int]],
        max_records: int = 1000,
        batch_wait_ms: int = 0,
    ) -> None:
        """`max_records`: at most this many records a poll, applied in one transaction;
        `batch_wait_ms`: how long the broker may hold a fetch to gather more
        (`bus.kafka.reader`)."""
        self._name, self._topic, self._bootstrap, self._pool = name, topic, bootstrap, pool
        self._max_records = max_records
        self._batch_wait_ms = batch_wait_ms
        self._decode, self._apply = decode, apply
        self._offsets = StoredOffsets(pool, name, topic)

    async def run(self) -> None:
        consumer = kafka.reader(
            self._bootstrap,
            group_id=f"{self._topic}.{self._name}",
            batch_wait_ms=self._batch_wait_ms,
        )
        producer = kafka.producer(self._bootstrap)
        await producer.start()
        await consumer.start()
        consumer.subscribe([self._topic], listener=SeekOnAssignment(self._offsets, consumer))
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=self._max_records)
                raise_rebalance_error(self._offsets)
                moves: dict[int, tuple[int, int]] = {}
                records: list[ConsumerRecord[Any, Any]] = []
                for tp, fetched in batches.items():
                    unseen = self._offsets.unseen(tp.partition, fetched)
                    if unseen is None or not unseen[1]:
                        continue
                    moves[tp.partition] = (unseen[0], unseen[1][-1].offset + 1)
                    records.extend(unseen[1])
                if not moves:
                    continue
                try:
                    await self._commit(producer, records, moves)
                except LostOwnership:
                    log.warning("consumer.lost_ownership", consumer=self._name)
                    await self._offsets.seek(consumer, consumer.assignment())
        finally:
            await consumer.stop()
            await producer.stop()

    async def _commit(
        self, producer: AIOKafkaProducer, records: Records, moves: dict[int, tuple[int, int]]
    ) -> None:
        items = await self._decode(producer, records)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._offsets.advance(conn, moves)
            written = await self._apply(conn, items)
        for partition, (_, to) in moves.items():
            self._offsets.advanced(partition, to)
        log.info("consumer.applied", consumer=self._name, records=len(records), messages=written)

"""Runs one projection over the event topic, exactly once per event.

For every batch of one partition, the projection's rows and the partition's next offset are
written in ONE PostgreSQL transaction, and `pg_notify('projection_progress', ...)` is sent
from inside it (delivered at commit). On assignment the consumer seeks to the stored offsets,
so redelivered events are never applied twice; Kafka's own committed offsets are not used.
An unreadable event goes to the dead-letter topic and the projection moves past it.
"""

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.codec import EVENTS, MalformedMessage
from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topics import Topics
from projections import metrics
from projections.db import Connection
from services.coupons.bus import kafka
from services.coupons.bus.dead_letters import dead_letter

log = structlog.get_logger(__name__)

PROGRESS_CHANNEL = "projection_progress"
RECHECK_S = 5.0


Apply = Callable[[Connection, Sequence[Envelope[Event]]], Awaitable[None]]
"""Apply a batch of events, in topic order, inside the caller's transaction."""


def each(apply_one: Callable[[Connection, Envelope[Event]], Awaitable[None]]) -> Apply:
    """A batch `Apply` from a per-event function, for projections that need no batching."""

    async def apply(conn: Connection, envelopes: Sequence[Envelope[Event]]) -> None:
        for envelope in envelopes:
            await apply_one(conn, envelope)

    return apply


@dataclass(frozen=True)
class Projection:
    name: str
    apply: Apply
    tables: tuple[str, ...] = ()
    """The tables it alone writes: what `coupons projections rebuild` replaces."""


async def stored_offsets(conn: Connection, projection: str, topic: str) -> dict[int, int]:
    rows = await conn.fetch(
        """SELECT partition, next_offset FROM projection_offsets
           WHERE projection = $1 AND topic = $2""",
        projection,
        topic,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


class LostOwnership(RuntimeError):
    """Another consumer advanced this partition's offset: our batch must not commit."""


class ProjectionRunner:
    def __init__(
        self,
        projection: Projection,
        bootstrap: str,
        topics: Topics,
        pool: asyncpg.Pool,
        group_id: str | None = None,
    ) -> None:
        self.projection = projection
        self._group_id = group_id or f"{topics.events.name}.projection.{projection.name}"
        self._bootstrap = bootstrap
        self._topics = topics
        self._pool = pool
        # next offset per owned partition, as stored; a partition is absent until its
        # assignment has loaded this from PostgreSQL and sought the consumer to it
        self._stored: dict[int, int] = {}
        self._rebalance_error: Exception | None = None

    async def run(self) -> None:
        topic = self._topics.events.name
        consumer = kafka.reader(self._bootstrap, group_id=self._group_id)
        producer = kafka.producer(self._bootstrap)
        await producer.start()
        await consumer.start()
        consumer.subscribe([topic], listener=_SeekToStored(self, consumer))
        recheck_at = time.monotonic() + RECHECK_S
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                if self._rebalance_error is not None:
                    raise self._rebalance_error
                for tp in consumer.assignment():
                    await self._advance(consumer, producer, tp, batches.get(tp, []))
                if time.monotonic() >= recheck_at:
                    recheck_at = time.monotonic() + RECHECK_S
                    await self._follow_moved_offsets(consumer)
        finally:
            await consumer.stop()
            await producer.stop()

    async def _advance(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
    ) -> None:
        expected = self._stored.get(tp.partition)
        if expected is None:
            return  # fetched before the assignment was sought: the seek re-reads them
        records = [r for r in records if r.offset >= expected]
        if records:
            next_offset = records[-1].offset + 1
        else:
            # The position moves past transaction markers too, which hold offsets but no
            # records: storing it keeps the reported lag exact.
            next_offset = await consumer.position(tp)
            if next_offset <= expected:
                return
        try:
            await self._apply_batch(producer, tp, records, expected, next_offset)
        except LostOwnership:
            log.warning(
                "projection.lost_ownership", projection=self.projection.name, partition=tp.partition
            )
            await self.seek_to_stored(consumer, {tp} & consumer.assignment())

    async def _apply_batch(
        self,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
        expected: int,
        next_offset: int,
    ) -> None:
        name = self.projection.name
        dead: list[str] = []
        async with self._pool.acquire() as conn, conn.transaction():
            moved = await conn.fetchval(
                """UPDATE projection_offsets SET next_offset = $5, updated_at = now()
                   WHERE projection = $1 AND topic = $2 AND partition = $3 AND next_offset = $4
                   RETURNING next_offset""",
                name,
                tp.topic,
                tp.partition,
                expected,
                next_offset,
            )
            if moved is None:
                raise LostOwnership(f"{name} {tp.topic}[{tp.partition}] is not at {expected}")
            envelopes = []
            for record in records:
                try:
                    envelopes.append(EVENTS.decode(record.value))
                except MalformedMessage as error:
                    await dead_letter(producer, self._topics, record, error.reason, error.detail)
                    dead.append(error.reason)
            await self.projection.apply(conn, envelopes)
            for envelope in envelopes:
                structlog.contextvars.bind_contextvars(correlation_id=envelope.correlation_id)
                log.info("projection.applied", projection=name, type=envelope.type)
            structlog.contextvars.unbind_contextvars("correlation_id")
            await conn.execute(
                "SELECT pg_notify($1, $2)", PROGRESS_CHANNEL, f"{name}:{tp.partition}:{next_offset}"
            )
        self._stored[tp.partition] = next_offset
        metrics.APPLIED[name] += len(envelopes)
        metrics.DEAD_LETTERS.update((name, reason) for reason in dead)

    async def _follow_moved_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """A rebuild moves the stored offsets under us. With new events the compare-and-set
        notices; on a quiet partition nothing would, so look now and then."""
        async with self._pool.acquire() as conn:
            stored = await stored_offsets(conn, self.projection.name, self._topics.events.name)
        moved = {
            tp
            for tp in consumer.assignment()
            if tp.partition in self._stored
            and stored.get(tp.partition) != self._stored[tp.partition]
        }
        if moved:
            log.warning("projection.offsets_moved", projection=self.projection.name)
            await self.seek_to_stored(consumer, moved)

    async def seek_to_stored(
        self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
    ) -> None:
        """Load the stored offsets (creating rows at 0 for new partitions), seek to them,
        and only then accept records of these partitions."""
        name, topic = self.projection.name, self._topics.events.name
        for tp in assigned:
            self._stored.pop(tp.partition, None)
        async with self._pool.acquire() as conn:
            await conn.executemany(
                """INSERT INTO projection_offsets (projection, topic, partition, next_offset)
                   VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING""",
                [(name, topic, tp.partition) for tp in assigned],
            )
            stored = await stored_offsets(conn, name, topic)
        for tp in assigned:
            consumer.seek(tp, stored[tp.partition])
            self._stored[tp.partition] = stored[tp.partition]
        log.info("projection.assigned", projection=name, stored=stored)

    def forget(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._stored.pop(tp.partition, None)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ProjectionRunner, consumer: AIOKafkaConsumer) -> None:
        self._runner = runner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._runner.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # aiokafka logs and swallows a listener's exception: hand it to the run loop.
        try:
            await self._runner.seek_to_stored(self._consumer, assigned)
        except Exception as error:  # noqa: BLE001 - re-raised by the run loop
            self._runner._rebalance_error = error

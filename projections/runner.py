"""Runs one projection over the event topic, exactly once per event.

For every batch of one partition, the projection's rows and the partition's next offset are
written in ONE PostgreSQL transaction, and `pg_notify('projection_progress', ...)` is sent
from inside it (delivered at commit). On assignment the consumer seeks to the stored offsets,
so redelivered events are never applied twice; Kafka's own committed offsets are not used.
An unreadable event goes to the dead-letter topic and the projection moves past it.
"""

from collections.abc import Awaitable, Callable
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
from services.coupons.bus import kafka
from services.coupons.bus.dead_letters import dead_letter

log = structlog.get_logger(__name__)

PROGRESS_CHANNEL = "projection_progress"


@dataclass(frozen=True)
class Projection:
    name: str
    apply: Callable[[asyncpg.Connection, Envelope[Event]], Awaitable[None]]


async def stored_offsets(conn: asyncpg.Connection, projection: str, topic: str) -> dict[int, int]:
    rows = await conn.fetch(
        """SELECT partition, next_offset FROM projection_offsets
           WHERE projection = $1 AND topic = $2""",
        projection,
        topic,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


class ProjectionRunner:
    def __init__(
        self, projection: Projection, bootstrap: str, topics: Topics, pool: asyncpg.Pool
    ) -> None:
        self.projection = projection
        self._bootstrap = bootstrap
        self._topics = topics
        self._pool = pool
        self._stored: dict[int, int] = {}

    async def run(self) -> None:
        topic = self._topics.events.name
        consumer = kafka.reader(
            self._bootstrap, group_id=f"{topic}.projection.{self.projection.name}"
        )
        producer = kafka.producer(self._bootstrap)
        await producer.start()
        await consumer.start()
        consumer.subscribe([topic], listener=_SeekToStored(self, consumer))
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                for tp in consumer.assignment():
                    # The position moves past transaction markers too, which hold offsets
                    # but no records: storing it keeps the reported lag exact.
                    position = await consumer.position(tp)
                    records = batches.get(tp, [])
                    if records or position > self._stored.get(tp.partition, 0):
                        await self._apply_batch(producer, tp, records, position)
        finally:
            await consumer.stop()
            await producer.stop()

    async def _apply_batch(
        self,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
        next_offset: int,
    ) -> None:
        name = self.projection.name
        async with self._pool.acquire() as conn, conn.transaction():
            for record in records:
                try:
                    envelope = EVENTS.decode(record.value)
                except MalformedMessage as error:
                    await dead_letter(producer, self._topics, record, error.reason, error.detail)
                    continue
                structlog.contextvars.bind_contextvars(correlation_id=envelope.correlation_id)
                await self.projection.apply(conn, envelope)
                log.debug("projection.applied", projection=name, type=envelope.type)
            structlog.contextvars.unbind_contextvars("correlation_id")
            await conn.execute(
                """INSERT INTO projection_offsets (projection, topic, partition, next_offset)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (projection, topic, partition)
                   DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()""",
                name,
                tp.topic,
                tp.partition,
                next_offset,
            )
            await conn.execute(
                "SELECT pg_notify($1, $2)", PROGRESS_CHANNEL, f"{name}:{tp.partition}:{next_offset}"
            )
        self._stored[tp.partition] = next_offset

    async def seek_to_stored(
        self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
    ) -> None:
        async with self._pool.acquire() as conn:
            stored = await stored_offsets(conn, self.projection.name, self._topics.events.name)
        self._stored = dict(stored)
        for tp in assigned:
            if tp.partition in stored:
                consumer.seek(tp, stored[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        log.info("projection.assigned", projection=self.projection.name, stored=stored)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ProjectionRunner, consumer: AIOKafkaConsumer) -> None:
        self._runner = runner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.seek_to_stored(self._consumer, assigned)

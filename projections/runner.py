"""Runs one projection over the event topic, exactly once per event.

For every poll, the projection's rows and the next offset of each partition it read are
written in ONE PostgreSQL transaction, and `pg_notify('projection_progress', ...)` is sent
from inside it, once per partition (delivered at commit). On assignment the consumer seeks to
the stored offsets, so redelivered events are never applied twice; Kafka's own committed
offsets are not used.
An unreadable event goes to the dead-letter topic and the projection moves past it.
"""

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.codec import EVENTS, MalformedMessage
from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topics import Topics
from projections import metrics
from projections.db import Connection
from projections.offsets import LostOwnership, StoredOffsets
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
    indexes: tuple[str, ...] = ()
    """The indexes of those tables its `apply` relies on (lookups, ON CONFLICT keys): the
    only ones a rebuild maintains while it replays; the swap builds the rest."""


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
        self.offsets = StoredOffsets(pool, projection.name, topics.events.name)

    async def run(self) -> None:
        topic = self._topics.events.name
        consumer = kafka.reader(self._bootstrap, group_id=self._group_id)
        producer = kafka.producer(self._bootstrap)
        await producer.start()
        await consumer.start()
        consumer.subscribe([topic], listener=self.offsets.listener(consumer))
        recheck_at = time.monotonic() + RECHECK_S
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                if self.offsets.rebalance_error is not None:
                    raise self.offsets.rebalance_error
                await self._advance(consumer, producer, batches)
                if time.monotonic() >= recheck_at:
                    recheck_at = time.monotonic() + RECHECK_S
                    await self.offsets.follow_moved(consumer)
        finally:
            await consumer.stop()
            await producer.stop()

    async def _advance(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        """Apply what one poll fetched, every partition in ONE transaction: its cost (a few
        round trips) is paid once per poll, not once per partition."""
        moves: dict[int, tuple[int, int]] = {}
        fetched: list[ConsumerRecord[Any, Any]] = []
        for tp in consumer.assignment():
            unseen = self.offsets.unseen(tp.partition, batches.get(tp, []))
            if unseen is None:
                continue
            expected, records = unseen
            if records:
                next_offset = records[-1].offset + 1
            else:
                # The position moves past transaction markers too, which hold offsets but no
                # records: storing it keeps the reported lag exact.
                next_offset = await consumer.position(tp)
                if next_offset <= expected:
                    continue
            moves[tp.partition] = (expected, next_offset)
            fetched.extend(records)  # a campaign's events are in one partition, in order
        if not moves:
            return
        try:
            await self._apply_batch(producer, fetched, moves)
        except LostOwnership:
            log.warning(
                "projection.lost_ownership", projection=self.projection.name, partitions=moves
            )
            await self.offsets.seek(
                consumer, {tp for tp in consumer.assignment() if tp.partition in moves}
            )

    async def _apply_batch(
        self,
        producer: AIOKafkaProducer,
        records: list[ConsumerRecord[Any, Any]],
        moves: dict[int, tuple[int, int]],
    ) -> None:
        name = self.projection.name
        dead: list[str] = []
        async with self._pool.acquire() as conn, conn.transaction():
            await self.offsets.advance_many(conn, moves)
            envelopes = []
            for record in records:
                try:
                    envelopes.append(EVENTS.decode(record.value))
                except MalformedMessage as error:
                    await dead_letter(producer, self._topics, record, error.reason, error.detail)
                    dead.append(error.reason)
            await self.projection.apply(conn, envelopes)
            for envelope in envelopes:
                log.info(
                    "projection.applied",
                    projection=name,
                    type=envelope.type,
                    correlation_id=envelope.correlation_id,
                )
            await conn.execute(
                "SELECT pg_notify($1, progress) FROM unnest($2::text[]) AS progress",
                PROGRESS_CHANNEL,
                [f"{name}:{partition}:{to}" for partition, (_, to) in moves.items()],
            )
        for partition, (_, to) in moves.items():
            self.offsets.advanced(partition, to)
        metrics.APPLIED[name] += len(envelopes)
        metrics.DEAD_LETTERS.update((name, reason) for reason in dead)

"""The Stripe translator: consumes the stripe-events topic, exactly once per Stripe event.

Each batch of a partition's records (up to CHUNK) is handled in ONE PostgreSQL transaction
that advances the partition's stored offset (compare-and-set, as projections do), records
each Stripe event id as handled, and writes the bridge's own rows; an order's row is locked
while a refund counts against it. The commands it sends on the way are idempotent, so a
crash (or a retried transaction) before the commit only means they are sent again and
answered with their first outcome. A refund held while its payment was being recorded on
another partition (not yet committed) is matched again every SWEEP_S.
Partitions are handled concurrently; one partition's records in order. An event the bridge
cannot read goes to the dead-letter topic and the translator moves on.
"""

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.topics import Topics
from projections.db import DATABASE_UNAVAILABLE, Connection
from projections.offsets import LostOwnership, StoredOffsets, raise_rebalance_error
from services.coupons import parked
from services.coupons.bus import kafka
from services.coupons.bus.dead_letters import dead_letter
from services.coupons.bus.gateway import DecisionPending
from services.coupons.stripe.shapes import Fact, MalformedStripeEvent, fact_of
from services.coupons.stripe.translate import Decide, Translator

log = structlog.get_logger(__name__)

NAME = "stripe-translator"
RETRIES = 20
SWEEP_S = 1.0
"""How often held refunds are matched again with orders recorded meanwhile."""
CHUNK = 100
"""Records of one partition handled in one transaction."""


class StripeConsumer:
    def __init__(self, bootstrap: str, topics: Topics, pool: asyncpg.Pool, decide: Decide) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._pool = pool
        self._translator = Translator(decide)
        self._offsets = StoredOffsets(pool, NAME, topics.stripe_events.name)

    async def run(self) -> None:
        self._offsets.rebalance_error = None  # a restart after a failed assignment tries afresh
        topic = self._topics.stripe_events.name
        consumer = kafka.reader(self._bootstrap, group_id=f"{topic}.{NAME}")
        producer = kafka.producer(self._bootstrap)
        await producer.start()
        await consumer.start()
        consumer.subscribe([topic], listener=self._offsets.listener(consumer))
        try:
            swept = time.monotonic()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                raise_rebalance_error(self._offsets)
                await asyncio.gather(
                    *(self._partition(consumer, producer, tp, rs) for tp, rs in batches.items())
                )
                if time.monotonic() - swept > SWEEP_S:
                    await self._with_retries(self._sweep)
                    swept = time.monotonic()
        finally:
            await consumer.stop()
            await producer.stop()

    async def _partition(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
    ) -> None:
        unseen = self._offsets.unseen(tp.partition, records)
        if unseen is None:
            return
        _, records = unseen
        for first in range(0, len(records), CHUNK):
            chunk = records[first : first + CHUNK]
            try:
                await self._with_retries(functools.partial(self._handle, producer, tp, chunk))
            except LostOwnership:
                log.warning("stripe.lost_ownership", partition=tp.partition)
                await self._offsets.seek(consumer, {tp} & consumer.assignment())
                return

    async def _with_retries(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` (one transaction) again when it collided with another replica or
        partition recording the same order: the retry sees the other's row."""
        for attempt in range(RETRIES):
            try:
                return await work()
            except asyncpg.UniqueViolationError:
                log.info("stripe.retry_after_conflict", attempt=attempt)
        await work()

    async def _sweep(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            released = await self._translator.release_held(conn)
        if released:
            log.info("stripe.held_refunds_released", count=released)

    async def _handle(
        self,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
    ) -> None:
        expected, next_offset = self._offsets.next_offset(tp.partition), records[-1].offset + 1
        assert expected is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await self._offsets.advance(conn, {tp.partition: (expected, next_offset)})
            for record in records:
                await self._one(conn, producer, record)
        self._offsets.advanced(tp.partition, next_offset)

    async def _translate(
        self,
        conn: Connection,
        producer: AIOKafkaProducer,
        record: ConsumerRecord[Any, Any],
        fact: Fact,
        event_id: str,
    ) -> str:
        """The translation's outcome; `parked` when it failed on this event (a value out of
        bounds, a bug): the event is dead-lettered, the translator goes on. Failures of a
        dependency (PostgreSQL, the decider) and conflicts with another replica propagate:
        the chunk is retried."""
        try:
            async with conn.transaction():  # a savepoint: what it wrote is undone if it fails
                return await self._translator.handle(conn, fact, event_id)
        except (asyncpg.UniqueViolationError, DecisionPending):
            raise
        except DATABASE_UNAVAILABLE:
            raise
        except Exception as error:  # noqa: BLE001 - parked, with the error, and counted
            await dead_letter(producer, self._topics, record, "translation_failed", repr(error))
            parked.PARKED[NAME, "translation_failed"] += 1
            return "parked"

    async def _one(
        self, conn: Connection, producer: AIOKafkaProducer, record: ConsumerRecord[Any, Any]
    ) -> None:
        try:
            event = json.loads(record.value)
            event_id, event_type = str(event["id"]), str(event["type"])
        except (ValueError, TypeError, KeyError) as error:
            await dead_letter(producer, self._topics, record, "invalid_json", str(error))
            return
        structlog.contextvars.bind_contextvars(correlation_id=f"stripe-{event_id}")
        if await conn.fetchval("SELECT 1 FROM stripe_events WHERE event_id = $1", event_id):
            outcome = "duplicate"
        else:
            try:
                fact = fact_of(event)
            except MalformedStripeEvent as error:
                fact = None
                await dead_letter(producer, self._topics, record, "schema_violation", str(error))
                outcome = "malformed"
            else:
                outcome = "kept"
            if fact is not None:
                outcome = await self._translate(conn, producer, record, fact, event_id)
            await conn.execute(
                "INSERT INTO stripe_events (event_id, type, outcome) VALUES ($1, $2, $3)",
                event_id,
                event_type,
                outcome,
            )
        log.info("stripe.event_handled", stripe_event=event_id, type=event_type, outcome=outcome)
        structlog.contextvars.unbind_contextvars("correlation_id")

"""The contacts processor: folds `growthos.contact-events.v1` into profiles and keeps
memberships live, exactly once per event.

Per poll, ONE PostgreSQL transaction holds the stored offsets of the partitions read (the
projections' compare-and-set pattern, projections/offsets.py, under the name `contacts` and
a consumer group of its own), the event ids applied (a redelivered id is skipped), the
profiles, the memberships, the timers and the outbox of entered/left messages. Membership is
reconciled at the wall clock's current second. An unreadable message goes to the
dead-letter topic and the processor moves past it."""

import time
from collections import defaultdict
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from contracts.contacts import ContactEvent
from contracts.topics import Topics
from projections.offsets import LostOwnership, SeekOnAssignment, StoredOffsets
from services.coupons.bus import kafka
from services.coupons.bus.dead_letters import dead_letter
from services.coupons.contacts import store
from services.coupons.contacts.profile import fold

log = structlog.get_logger(__name__)

NAME = "contacts"


class ContactsProcessor:
    def __init__(self, bootstrap: str, topics: Topics, pool: asyncpg.Pool) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._pool = pool
        self._offsets = StoredOffsets(pool, NAME, topics.contact_events.name)

    async def run(self) -> None:
        consumer = kafka.reader(
            self._bootstrap, group_id=f"{self._topics.contact_events.name}.{NAME}"
        )
        producer = kafka.producer(self._bootstrap)
        await producer.start()
        await consumer.start()
        consumer.subscribe(
            [self._topics.contact_events.name], listener=SeekOnAssignment(self._offsets, consumer)
        )
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                if self._offsets.rebalance_error is not None:
                    raise self._offsets.rebalance_error
                try:
                    await self._advance(consumer, producer, batches)
                except LostOwnership:
                    log.warning("contacts.lost_ownership")
                    await self._offsets.seek(consumer, consumer.assignment())
        finally:
            await consumer.stop()
            await producer.stop()

    async def _advance(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        moves: dict[int, tuple[int, int]] = {}
        records: list[ConsumerRecord[Any, Any]] = []
        for tp, fetched in batches.items():
            unseen = self._offsets.unseen(tp.partition, fetched)
            if unseen is None or not unseen[1]:
                continue
            moves[tp.partition] = (unseen[0], unseen[1][-1].offset + 1)
            records.extend(unseen[1])
        if not moves:
            return
        events: list[ContactEvent] = []
        for record in records:
            try:
                events.append(ContactEvent.model_validate_json(record.value))
            except ValidationError as error:
                await dead_letter(producer, self._topics, record, "invalid_event", str(error)[:500])
        async with self._pool.acquire() as conn, conn.transaction():
            await self._offsets_advance(conn, moves)
            written = await apply(conn, events)
        for partition, (_, to) in moves.items():
            self._offsets.advanced(partition, to)
        log.info("contacts.applied", events=len(events), messages=written)

    async def _offsets_advance(self, conn: Any, moves: dict[int, tuple[int, int]]) -> None:
        for partition, (expected, to) in moves.items():
            await self._offsets.advance(conn, partition, expected, to)


async def apply(conn: Any, events: list[ContactEvent]) -> int:
    """Apply `events` (skipping ids already applied) inside the caller's transaction."""
    if not events:
        return 0
    fresh = {
        r["event_id"]
        for r in await conn.fetch(
            """INSERT INTO contact_event_ids (event_id) SELECT unnest($1::text[])
               ON CONFLICT DO NOTHING RETURNING event_id""",
            list({e.id for e in events}),
        )
    }
    by_contact: dict[str, list[ContactEvent]] = defaultdict(list)
    for event in events:
        if event.id in fresh:
            fresh.discard(event.id)  # a duplicate inside the batch counts once
            by_contact[event.contact_id].append(event)
    if not by_contact:
        return 0
    profiles = await store.lock_profiles(conn, by_contact)
    causes = {}
    for contact_id, contact_events in by_contact.items():
        profile = profiles[contact_id]
        for event in contact_events:
            profile = fold(profile, event)
        profiles[contact_id] = profile
        causes[contact_id] = contact_events[-1].id
    segments = await store.live_segments(conn)
    return await store.settle(conn, profiles, segments, causes, int(time.time()), save=True)

"""The contacts processor: folds `growthos.contact-events.v1` into profiles and keeps
memberships live, exactly once per event.

Per poll, ONE PostgreSQL transaction holds the stored offsets (offsets name `contacts`, a
consumer group of its own; `consumer.OffsetConsumer`), the event ids applied (a redelivered
id is skipped), the profiles, the memberships, the timers and the outbox of entered/left
messages. Membership is reconciled at the wall clock's current second. An unreadable message
goes to the dead-letter topic and the processor moves past it."""

import time
from collections import defaultdict

import asyncpg
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from contracts.contacts import ContactEvent
from contracts.topics import Topics
from projections.db import Connection
from services.coupons.bus.dead_letters import dead_letter
from services.coupons.contacts import store
from services.coupons.contacts.consumer import OffsetConsumer, Records
from services.coupons.contacts.profile import Profile, fold, touched
from services.coupons.contacts.reactions import Reaction

NAME = "contacts"
POLL = 5000
"""Records a poll (one transaction): fewer, larger transactions (docs/performance/contacts.md)."""


def contacts_processor(
    bootstrap: str, topics: Topics, pool: asyncpg.Pool, react: Reaction | None = None
) -> OffsetConsumer[ContactEvent]:
    async def decode(producer: AIOKafkaProducer, records: Records) -> list[ContactEvent]:
        events = []
        for record in records:
            try:
                events.append(ContactEvent.model_validate_json(record.value))
            except ValidationError as error:
                await dead_letter(producer, topics, record, "invalid_event", str(error)[:500])
        return events

    async def applied(conn: Connection, events: list[ContactEvent]) -> int:
        return await apply(conn, events, react)

    return OffsetConsumer(
        NAME, topics.contact_events.name, bootstrap, pool, decode, applied, max_records=POLL
    )


async def fresh_ids(conn: Connection, ids: list[str]) -> set[str]:
    """Record `ids` as applied; the ones not applied before."""
    rows = await conn.fetch(
        """INSERT INTO contact_event_ids (event_id) SELECT unnest($1::text[])
           ON CONFLICT DO NOTHING RETURNING event_id""",
        sorted(set(ids)),
    )
    return {r["event_id"] for r in rows}


async def apply(conn: Connection, events: list[ContactEvent], react: Reaction | None = None) -> int:
    """Apply `events` (skipping ids already applied) inside the caller's transaction."""
    if not events:
        return 0
    fresh = await fresh_ids(conn, [e.id for e in events])
    by_contact: dict[str, list[ContactEvent]] = defaultdict(list)
    for event in events:
        if event.id in fresh:
            fresh.discard(event.id)  # a duplicate inside the batch counts once
            by_contact[event.contact_id].append(event)
    if not by_contact:
        return 0
    profiles = await store.lock_profiles(conn, by_contact)
    causes = {}
    inputs: dict[str, frozenset[str] | None] = {}
    for contact_id, contact_events in by_contact.items():
        profile = profiles[contact_id]
        # a new contact is evaluated against every segment; a known one against those
        # reading what its events changed (membership.reconcile)
        inputs[contact_id] = (
            None
            if profile == Profile(contact_id)
            else frozenset().union(*(touched(e) for e in contact_events))
        )
        for event in contact_events:
            profile = fold(profile, event)
        profiles[contact_id] = profile
        causes[contact_id] = contact_events[-1].id
    segments = await store.live_segments(conn)
    now = int(time.time())
    return await store.settle(
        conn,
        profiles,
        segments,
        causes,
        now,
        save=True,
        react=react,
        events=by_contact,
        touched=inputs,
    )

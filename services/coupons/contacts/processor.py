"""The contacts processor: folds `growthos.contact-events.v1` into profiles and keeps
memberships live, exactly once per event.

Per poll, ONE PostgreSQL transaction holds the stored offsets (offsets name `contacts`, a
consumer group of its own; `consumer.OffsetConsumer`), the event ids applied (a redelivered
id is skipped), the profiles, the memberships, the timers and the outbox of entered/left
messages. Membership is reconciled at the wall clock's current second. An unreadable message
goes to the dead-letter topic and the processor moves past it."""

import time
from collections import defaultdict
from collections.abc import Mapping

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
    known = await store.lock_profiles(conn, by_contact, create=False)
    profiles = _folded(known, by_contact)
    new = {cid: p for cid, p in profiles.items() if cid not in known}
    if new and (raced := await store.create_profiles(conn, new)):
        # another writer created these meanwhile: fold again on what it stored (rare)
        again = await store.lock_profiles(conn, raced, create=False)
        known.update(again)
        profiles.update(_folded(again, {cid: by_contact[cid] for cid in raced}))
    await store.save_profiles(conn, {cid: profiles[cid] for cid in known})
    segments = await store.live_segments(conn)
    return await store.settle(
        conn,
        profiles,
        segments,
        {cid: contact_events[-1].id for cid, contact_events in by_contact.items()},
        int(time.time()),
        react=react,
        events=by_contact,
        touched={cid: _touched(known.get(cid), by_contact[cid]) for cid in profiles},
    )


def _folded(
    known: Mapping[str, Profile], by_contact: Mapping[str, list[ContactEvent]]
) -> dict[str, Profile]:
    """Each contact's profile (stored, or new) with its events folded in."""
    profiles = {}
    for contact_id, contact_events in by_contact.items():
        profile = known.get(contact_id) or Profile(contact_id)
        for event in contact_events:
            profile = fold(profile, event)
        profiles[contact_id] = profile
    return profiles


def _touched(stored: Profile | None, events: list[ContactEvent]) -> frozenset[str] | None:
    """What membership.reconcile re-evaluates: a new contact every segment (None); a known
    one the segments reading what its events changed."""
    if stored is None or stored == Profile(stored.contact_id):
        return None
    return frozenset().union(*(touched(e) for e in events))

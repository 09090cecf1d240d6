"""`coupons contacts rebuild`: profiles and memberships rebuilt from the topics, swapped in.

1. Replay, into shadow tables in schema `rebuild_contacts` (the contacts code names its tables
   unqualified, so `search_path` points it there): `growthos.contact-events.v1` through the
   processor's own `apply`, then our event log's coupon facts through theirs, each up to the
   end offsets taken at the start, deduped by event id as live. The shadow schema has an
   empty `segments` table, so the replay folds profiles only: no membership is evaluated at
   the (moving) instants of the replay, no automation reacts, nothing is published.
2. ONE transaction swaps: the stored offsets of `contacts` and `contact_coupon_facts` move to
   those end offsets (a running processor's next compare-and-set fails and it re-reads from
   there, so events appended meanwhile are applied once, on top of the rebuilt rows); the
   profiles, applied event ids and timers are replaced; then every rebuilt profile is
   reconciled against the active live segments at one instant, against the memberships held,
   so a contact whose membership differs gets its entered/left message (cause
   `rebuild:<epoch second>`) and every contact its timer. Static segments and archived ones
   keep their members. Readers see the old rows until the commit.
One rebuild at a time (an advisory lock)."""

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from contracts.codec import EVENTS, MalformedMessage
from contracts.contacts import ContactEvent
from contracts.events import CodeDistributed, CodeRedeemed, RedemptionRefunded, RedemptionReversed
from contracts.topics import Topics
from projections.db import Connection
from projections.rebuild import Progress, from_the_beginning, quiet
from services.coupons.bus import kafka
from services.coupons.contacts import coupon_facts, processor, store
from services.coupons.contacts.profile import epoch

SHADOW = "rebuild_contacts"
REPLACED = ("contact_profiles", "contact_event_ids", "contact_timers")
SHADOWED = (*REPLACED, "segment_members", "segment_outbox", "segments")
BATCH = 5000
PAGE = 1000
LOCK = "rebuild:contacts"

T = TypeVar("T")
Decode = Callable[[ConsumerRecord[Any, Any]], T | None]
"""A record's item, None when it is none of ours, or raises Unreadable."""


class RebuildRunning(RuntimeError):
    """Another contacts rebuild holds the lock."""


@dataclass(frozen=True)
class Rebuilt:
    contact_events: int
    coupon_events: int
    skipped: int
    profiles: int
    messages: int
    seconds: float


async def rebuild_contacts(
    bootstrap: str,
    topics: Topics,
    pool: asyncpg.Pool,
    partitions: Mapping[str, int],
    progress: Callable[[str], Progress] = lambda _: quiet,
) -> Rebuilt:
    """`partitions`: per topic name, how many it has (bus.topics.ensure_topics)."""
    started = time.monotonic()
    async with pool.acquire() as lock:
        if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", LOCK):
            raise RebuildRunning("a contacts rebuild is already running: wait for it to finish")
        try:
            async with pool.acquire() as conn:
                await _create_shadow(conn)
            contacts = await _replay(
                bootstrap,
                topics.contact_events.name,
                partitions[topics.contact_events.name],
                pool,
                _contact_event,
                processor.apply,
                progress("contact events"),
            )
            coupons = await _replay(
                bootstrap,
                topics.events.name,
                partitions[topics.events.name],
                pool,
                _coupon_fact,
                coupon_facts.apply,
                progress("coupon facts"),
            )
            profiles, messages = await _swap(
                pool,
                {processor.NAME: contacts, coupon_facts.NAME: coupons},
                progress("memberships"),
            )
        finally:
            await lock.execute("SELECT pg_advisory_unlock(hashtext($1))", LOCK)
    return Rebuilt(
        contacts.applied,
        coupons.applied,
        contacts.skipped + coupons.skipped,
        profiles,
        messages,
        time.monotonic() - started,
    )


async def _create_shadow(conn: Connection) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE; CREATE SCHEMA {SHADOW}")
    for table in SHADOWED:
        await conn.execute(
            f"CREATE UNLOGGED TABLE {SHADOW}.{table} (LIKE public.{table} INCLUDING ALL)"
        )


class Unreadable(ValueError):
    """A record the live consumer dead-lettered or skipped: skipped and counted."""


def _contact_event(record: ConsumerRecord[Any, Any]) -> ContactEvent:
    try:
        return ContactEvent.model_validate_json(record.value)
    except ValidationError as error:
        raise Unreadable(str(error)) from error


_COUPON_EVENTS = (CodeDistributed, CodeRedeemed, RedemptionReversed, RedemptionRefunded)


def _coupon_fact(record: ConsumerRecord[Any, Any]) -> coupon_facts.Fed | None:
    try:
        envelope = EVENTS.decode(record.value)
    except MalformedMessage as error:
        raise Unreadable(str(error)) from error
    if not isinstance(envelope.data, _COUPON_EVENTS):
        return None  # an event that is no coupon fact
    return coupon_facts.Fed(f"coupon:{envelope.id}", epoch(envelope.occurred_at), envelope.data)


@dataclass(frozen=True)
class _Replayed:
    topic: str
    ends: dict[int, int]
    applied: int
    skipped: int


async def _replay(
    bootstrap: str,
    topic: str,
    partitions: int,
    pool: asyncpg.Pool,
    decode: Decode[T],
    apply: Callable[[Connection, list[T]], Awaitable[int]],
    progress: Progress,
) -> _Replayed:
    """Apply `topic` from its beginning to its end offsets now into the shadow tables."""
    consumer = kafka.reader(bootstrap)
    await consumer.start()
    try:
        tps, starts, ends = await from_the_beginning(consumer, topic, partitions)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        remaining = {tp for tp in tps if starts[tp] < ends[tp]}
        applied = skipped = 0
        progress(0, total)
        async with pool.acquire() as conn:
            await conn.execute(f"SET search_path = {SHADOW}, public")
            try:
                while remaining:
                    fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=BATCH)
                    items: list[T] = []
                    for tp, records in fetched.items():
                        for record in records:
                            if record.offset >= ends[tp]:
                                break
                            try:
                                item = decode(record)
                            except Unreadable:
                                skipped += 1
                                continue
                            if item is not None:
                                items.append(item)
                    async with conn.transaction():
                        await apply(conn, items)
                    applied += len(items)
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    remaining = {tp for tp in remaining if positions[tp] < ends[tp]}
                    done = sum(min(positions[tp], ends[tp]) - starts[tp] for tp in tps)
                    progress(done, total)
            finally:
                await conn.execute("RESET search_path")
    finally:
        await consumer.stop()
    return _Replayed(topic, {tp.partition: ends[tp] for tp in tps}, applied, skipped)


async def _swap(
    pool: asyncpg.Pool, replayed: dict[str, _Replayed], progress: Progress
) -> tuple[int, int]:
    """Move the offsets, replace the rows and reconcile every profile, in one transaction;
    the number of profiles and of entered/left messages written."""
    now = int(time.time())
    async with pool.acquire() as conn, conn.transaction():
        # Offsets first, as projections/rebuild.py: a processor mid-poll holds these rows
        # until it commits, then its compare-and-set fails against the moved offsets.
        await conn.executemany(
            """INSERT INTO projection_offsets (projection, topic, partition, next_offset)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (projection, topic, partition)
               DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()""",
            [
                (name, r.topic, partition, end)
                for name, r in replayed.items()
                for partition, end in r.ends.items()
            ],
        )
        await conn.execute(f"TRUNCATE {', '.join(f'public.{t}' for t in REPLACED)}")
        for table in REPLACED:
            await conn.execute(f"INSERT INTO public.{table} SELECT * FROM {SHADOW}.{table}")
        await conn.execute(f"DROP SCHEMA {SHADOW} CASCADE")
        total = await conn.fetchval("SELECT count(*) FROM contact_profiles")
        segments = await store.live_segments(conn)
        cause = f"rebuild:{now}"
        done = messages = 0
        after = ""
        progress(0, total)
        while ids := await _page(conn, after):
            profiles = await store.lock_profiles(conn, ids)
            causes = dict.fromkeys(profiles, cause)
            messages += await store.settle(conn, profiles, segments, causes, now)
            done += len(ids)
            after = ids[-1]
            progress(done, total)
        if total == 0:
            progress(0, 0)
    return total, messages


async def _page(conn: Connection, after: str) -> Sequence[str]:
    rows = await conn.fetch(
        """SELECT contact_id FROM contact_profiles WHERE contact_id > $1
           ORDER BY contact_id LIMIT $2""",
        after,
        PAGE,
    )
    return [r["contact_id"] for r in rows]

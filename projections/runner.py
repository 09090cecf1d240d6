"""Runs the projections over the event topic, exactly once per event, with one consumer.

For every poll, each projection's rows and the next offset of each partition it read are
written in ONE PostgreSQL transaction, and `pg_notify('projection_progress', ...)` is sent
from inside it, once per projection and partition (delivered at commit). Each event is fetched
and decoded once for all of them: four consumers, each with its own fetches, decoding and
transaction per poll, took twice the CPU. Each projection keeps its own stored offsets (a
rebuild moves one projection's alone); on assignment the consumer seeks to the lowest of them,
and each projection applies only the records from its own. Redelivered events are never
applied twice; Kafka's own committed offsets are not used.
An unreadable event goes to the dead-letter topic and the projections move past it.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.codec import EVENTS, MalformedMessage
from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topics import Topics
from projections import metrics
from projections.db import DATABASE_UNAVAILABLE, Connection
from projections.offsets import (
    LostOwnership,
    SeekOnAssignment,
    StoredOffsets,
    advance_all,
    raise_rebalance_error,
)
from services.coupons.bus import kafka
from services.coupons.bus.dead_letters import dead_letter

log = structlog.get_logger(__name__)

PROGRESS_CHANNEL = "projection_progress"
RECHECK_S = 5.0
LINGER_S = 0.1
"""After a small poll (fewer than `SMALL_POLL` records), how long the runner lets more events
gather before its next poll, unless a read waits for a projection (`Watermarks.awaited`). A
poll costs a transaction of some fifteen statements whatever it holds: at 200 redemptions a
second, one poll per redemption was a quarter of the service's CPU; 100 ms rather than 25
took a quarter off a redemption's CPU at 50/s, an eighth at 200/s
(docs/performance/checkout.md, "A 100 ms linger")."""
SMALL_POLL = 100
"""A poll of fewer records is a trickle, worth waiting for more; a larger one (a backlog, a
burst: a fetch brings a thousand or more) is followed at once."""


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
        projections: Sequence[Projection],
        bootstrap: str,
        topics: Topics,
        pool: asyncpg.Pool,
        group_id: str | None = None,
        awaited: asyncio.Event | None = None,
        linger_s: float = LINGER_S,
    ) -> None:
        """`awaited`: set while a read waits for a projection (`Watermarks.awaited`): the
        runner then polls at once instead of lingering for `linger_s`."""
        self._awaited = awaited or asyncio.Event()
        self._linger_s = linger_s
        self._projections = {p.name: p for p in projections}
        self._group_id = group_id or f"{topics.events.name}.projector"
        self._bootstrap = bootstrap
        self._topics = topics
        self._pool = pool
        self._offsets = {
            p.name: StoredOffsets(pool, p.name, topics.events.name) for p in projections
        }
        self.rebalance_error: Exception | None = None
        """A failure in the rebalance listener, for the run loop to raise (aiokafka would log
        and swallow it)."""

    async def run(self) -> None:
        self.rebalance_error = None  # a restart after a failed assignment tries afresh
        topic = self._topics.events.name
        consumer = kafka.reader(self._bootstrap, group_id=self._group_id)
        producer = kafka.producer(self._bootstrap)
        await producer.start()
        await consumer.start()
        consumer.subscribe([topic], listener=SeekOnAssignment(self, consumer))
        recheck_at = time.monotonic() + RECHECK_S
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                raise_rebalance_error(self)
                await self._advance(consumer, producer, batches)
                if 0 < sum(len(records) for records in batches.values()) < SMALL_POLL:
                    await self._linger()
                if time.monotonic() >= recheck_at:
                    recheck_at = time.monotonic() + RECHECK_S
                    moved = set().union(*[await o.moved(consumer) for o in self._offsets.values()])
                    await self.seek(consumer, moved)
        finally:
            await consumer.stop()
            await producer.stop()

    async def _linger(self) -> None:
        """Let the events of the next transactions gather for `linger_s`, unless a read is
        waiting for a projection."""
        if not self._awaited.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._awaited.wait(), self._linger_s)
        self._awaited.clear()

    async def seek(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        """Load every projection's stored offsets of `partitions`, seek to the lowest, and
        only then accept their records."""
        if not partitions:
            return
        loaded = {name: await offsets.load(partitions) for name, offsets in self._offsets.items()}
        for tp in partitions:
            consumer.seek(tp, min(stored[tp] for stored in loaded.values()))
        for name, stored in loaded.items():
            self._offsets[name].accept(stored)

    def forget(self, revoked: set[TopicPartition]) -> None:
        for offsets in self._offsets.values():
            offsets.forget(revoked)

    async def _advance(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        """Apply what one poll fetched, every partition and projection in ONE transaction: its
        cost (a few round trips) is paid once per poll."""
        moves: dict[str, dict[int, tuple[int, int]]] = {}
        fetched: dict[str, list[ConsumerRecord[Any, Any]]] = {}
        for tp in consumer.assignment():
            records = batches.get(tp, [])
            # The position moves past transaction markers too, which hold offsets but no
            # records: storing it keeps the reported lag exact.
            position = records[-1].offset + 1 if records else await consumer.position(tp)
            for name, offsets in self._offsets.items():
                unseen = offsets.unseen(tp.partition, records)
                if unseen is None or position <= unseen[0]:
                    continue
                moves.setdefault(name, {})[tp.partition] = (unseen[0], position)
                # a campaign's events are in one partition, in order
                fetched.setdefault(name, []).extend(unseen[1])
        if not moves:
            return
        try:
            await self._apply_batch(producer, fetched, moves)
        except LostOwnership:
            log.warning("projection.lost_ownership", partitions=moves)
            lost = {p for ps in moves.values() for p in ps}
            await self.seek(consumer, {tp for tp in consumer.assignment() if tp.partition in lost})

    async def _apply_batch(
        self,
        producer: AIOKafkaProducer,
        fetched: dict[str, list[ConsumerRecord[Any, Any]]],
        moves: dict[str, dict[int, tuple[int, int]]],
    ) -> None:
        decoded: dict[tuple[int, int], Envelope[Event]] = {}
        unreadable: dict[tuple[int, int], str] = {}  # position -> reason
        records_at = {(r.partition, r.offset): r for rs in fetched.values() for r in rs}
        for at, record in records_at.items():
            try:  # once for all the projections that read it
                decoded[at] = EVENTS.decode(record.value)
            except MalformedMessage as error:
                await dead_letter(producer, self._topics, record, error.reason, error.detail)
                unreadable[at] = error.reason
        dead = [
            (name, unreadable[(r.partition, r.offset)])
            for name, records in fetched.items()
            for r in records
            if (r.partition, r.offset) in unreadable
        ]
        try:
            applied = await self._write(fetched, moves, decoded)
        except LostOwnership:
            raise
        except DATABASE_UNAVAILABLE:
            raise  # not the events' fault: the batch is retried as it is
        except Exception as error:  # noqa: BLE001 - one of its events cannot be applied: find it
            log.error("projection.batch_failed", error=repr(error), partitions=moves)
            records = {envelope.id: records_at[at] for at, envelope in decoded.items()}
            park = _Parking(producer, self._topics, records)
            applied = await self._write(fetched, moves, decoded, park)
            dead.extend(park.parked)
        for name, partitions in moves.items():
            for partition, (_, to) in partitions.items():
                self._offsets[name].advanced(partition, to)
        metrics.APPLIED.update(applied)
        metrics.DEAD_LETTERS.update(dead)

    async def _write(
        self,
        fetched: dict[str, list[ConsumerRecord[Any, Any]]],
        moves: dict[str, dict[int, tuple[int, int]]],
        decoded: dict[tuple[int, int], Envelope[Event]],
        park: "_Parking | None" = None,
    ) -> dict[str, int]:
        """Every projection's rows and offsets in ONE transaction; with `park`, each event
        alone in a savepoint, and one that fails is parked instead (the slow way, only after
        the batch failed). Returns the events applied per projection."""
        applied: dict[str, int] = {}
        async with self._pool.acquire() as conn, conn.transaction():
            await advance_all(conn, self._topics.events.name, moves)
            for name, records in fetched.items():
                positions = [(r.partition, r.offset) for r in records]
                envelopes = [decoded[at] for at in positions if at in decoded]
                apply = self._projections[name].apply
                if park is None:
                    await apply(conn, envelopes)
                else:
                    envelopes = await park.each(conn, name, apply, envelopes)
                applied[name] = len(envelopes)
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
                [
                    f"{name}:{partition}:{to}"
                    for name, partitions in moves.items()
                    for partition, (_, to) in partitions.items()
                ],
            )
        return applied


class _Parking:
    """Applies events one at a time, each in a savepoint, and parks those whose projection
    fails on them (a value it cannot store, a bug): they go to the dead-letter topic, with
    the projection and the error, and the projection's row for them stays missing until
    repaired (docs/architecture.md, "Parked messages")."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topics: Topics,
        records: dict[UUID, ConsumerRecord[Any, Any]],
    ) -> None:
        self._producer, self._topics, self._records = producer, topics, records
        self.parked: list[tuple[str, str]] = []

    async def each(
        self, conn: Connection, name: str, apply: Apply, envelopes: list[Envelope[Event]]
    ) -> list[Envelope[Event]]:
        """The envelopes applied; the others are parked."""
        done = []
        for envelope in envelopes:
            try:
                async with conn.transaction():  # a savepoint
                    await apply(conn, [envelope])
            except DATABASE_UNAVAILABLE:
                raise
            except Exception as error:  # noqa: BLE001 - parked, with the error, and counted
                await self._park(name, envelope, error)
                continue
            done.append(envelope)
        return done

    async def _park(self, name: str, envelope: Envelope[Event], error: Exception) -> None:
        record = self._records[envelope.id]
        reason = f"projection_failed:{name}"
        await dead_letter(self._producer, self._topics, record, reason, repr(error))
        self.parked.append((name, "projection_failed"))

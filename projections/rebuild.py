"""Rebuild a projection from the beginning of the event topic, with no window of partial data.

The events up to the topic's end offsets (taken at the start) are applied into shadow copies
of the projection's tables, in schema `rebuild_<name>` (the projection's SQL names its tables
unqualified, so `search_path` points it there). Then ONE transaction moves the projection's
stored offsets to those end offsets and replaces the live tables' rows with the shadow rows.
Readers see the old rows until that commit and the new ones after it. A running projector's
next compare-and-set on its offsets fails (LostOwnership), so it re-reads from the swapped
offsets: events appended during the rebuild are applied once, on top of the rebuilt rows.
Unreadable events were dead-lettered by the live projector; the rebuild skips and counts them.
"""

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.codec import EVENTS, MalformedMessage
from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topics import Topics
from projections.db import Connection
from projections.runner import Projection
from services.coupons.bus import kafka

BATCH = 20_000  # events per transaction: bigger than the live runner's, fewer round trips
Progress = Callable[[int, int], None]


class RebuildRunning(RuntimeError):
    """Another rebuild of the same projection holds its lock."""


@dataclass(frozen=True)
class _Batch:
    envelopes: list[Envelope[Event]]
    skipped: int
    done: int


@dataclass(frozen=True)
class Rebuilt:
    projection: str
    events: int
    skipped: int
    seconds: float


async def from_the_beginning(
    consumer: AIOKafkaConsumer, topic: str, partitions: int
) -> tuple[list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Assign `consumer` every partition of `topic`, at its beginning: the partitions, and
    where each starts and ends now (what a replay up to now reads)."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = await consumer.end_offsets(tps)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return tps, {tp: await consumer.position(tp) for tp in tps}, ends


def quiet(done: int, total: int) -> None:
    """A progress callback that shows nothing."""


def progress_bar(name: str) -> Progress:
    """A one-line progress bar on stderr: events applied of the total, and the rate."""
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(time.monotonic() - started, 1e-9)
        sys.stderr.write(
            f"\r{name:>10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
            f" events, {rate:,.0f}/s"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


async def _read(
    consumer: AIOKafkaConsumer,
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    out: "asyncio.Queue[_Batch | None]",
) -> None:
    """Decode every event before `ends` into batches; None when done."""
    remaining = {tp for tp in starts if starts[tp] < ends[tp]}
    while remaining:
        fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=BATCH)
        envelopes = []
        skipped = 0
        for tp, records in fetched.items():
            for record in records:
                if record.offset >= ends[tp]:
                    break
                try:
                    envelopes.append(EVENTS.decode(record.value))
                except MalformedMessage:
                    skipped += 1
        positions = {tp: await consumer.position(tp) for tp in starts}
        remaining = {tp for tp in remaining if positions[tp] < ends[tp]}
        done = sum(min(positions[tp], ends[tp]) - starts[tp] for tp in starts)
        await out.put(_Batch(envelopes, skipped, done))
    await out.put(None)


async def rebuild(
    projection: Projection,
    bootstrap: str,
    topics: Topics,
    pool: asyncpg.Pool,
    partitions: int,
    progress: Progress = lambda done, total: None,
) -> Rebuilt:
    """One rebuild of a projection at a time (an advisory lock): a second would drop the
    first's shadow tables under it."""
    if not projection.tables:
        raise ValueError(f"projection {projection.name} declares no tables to rebuild")
    key = f"rebuild:{projection.name}"
    async with pool.acquire() as lock:
        if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            raise RebuildRunning(
                f"a rebuild of {projection.name} is already running: wait for it to finish"
            )
        try:
            return await _replay_and_swap(projection, bootstrap, topics, pool, partitions, progress)
        finally:
            await lock.execute("SELECT pg_advisory_unlock(hashtext($1))", key)


async def _replay_and_swap(
    projection: Projection,
    bootstrap: str,
    topics: Topics,
    pool: asyncpg.Pool,
    partitions: int,
    progress: Progress,
) -> Rebuilt:
    started = time.monotonic()
    shadow = f"rebuild_{projection.name}"
    topic = topics.events.name
    async with pool.acquire() as conn:
        await _create_shadow(conn, projection, shadow)
    consumer = kafka.reader(bootstrap)
    await consumer.start()
    try:
        tps, starts, ends = await from_the_beginning(consumer, topic, partitions)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        progress(0, total)
        with _cycle_collector_paused():
            skipped = await _replay(projection, consumer, starts, ends, pool, shadow, progress)
    finally:
        await consumer.stop()
    async with pool.acquire() as conn, conn.transaction():
        # Offsets first: a projector mid-batch holds these rows until it commits, and then
        # waits on us, so the two never wait on each other's locks in opposite order.
        await conn.executemany(
            """INSERT INTO projection_offsets (projection, topic, partition, next_offset)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (projection, topic, partition)
               DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()""",
            [(projection.name, topic, tp.partition, ends[tp]) for tp in tps],
        )
        tables = ", ".join(f"public.{t}" for t in projection.tables)
        await conn.execute(f"TRUNCATE {tables}")
        for table in projection.tables:
            await _copy_rows(conn, f"{shadow}.{table}", f"public.{table}")
        await conn.execute(f"DROP SCHEMA {shadow} CASCADE")
    return Rebuilt(projection.name, total, skipped, time.monotonic() - started)


async def _create_shadow(conn: Connection, projection: Projection, shadow: str) -> None:
    """Empty copies of the projection's tables with only the indexes its `apply` relies on:
    maintaining the others row by row took about 40% of PostgreSQL's time in the replay, and
    the swap builds every live index anew anyway. Unlogged and never vacuumed: they are
    scratch space, dropped at the swap (or by the next rebuild, if this one dies)."""
    found = await conn.fetch(
        """SELECT c.relname AS name, pg_get_indexdef(c.oid) AS index, t.relname AS table
           FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
           JOIN pg_class t ON t.oid = i.indrelid
           WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1)
             AND t.relname = ANY($2)""",
        list(projection.indexes),
        list(projection.tables),
    )
    missing = set(projection.indexes) - {index["name"] for index in found}
    if missing:
        raise ValueError(
            f"projection {projection.name} relies on indexes its tables do not have: {missing}"
        )
    await conn.execute(f"DROP SCHEMA IF EXISTS {shadow} CASCADE; CREATE SCHEMA {shadow}")
    for table in projection.tables:
        await conn.execute(
            f"""CREATE UNLOGGED TABLE {shadow}.{table}
                (LIKE public.{table} INCLUDING ALL EXCLUDING INDEXES)
                WITH (autovacuum_enabled = false)"""
        )
    for index in found:
        table = index["table"]
        await conn.execute(index["index"].replace(f" ON public.{table} ", f" ON {shadow}.{table} "))


async def _replay(
    projection: Projection,
    consumer: AIOKafkaConsumer,
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    pool: asyncpg.Pool,
    shadow: str,
    progress: Progress,
) -> int:
    """Apply every event before `ends` into the shadow tables; returns how many were skipped
    as unreadable. Reading and decoding the next batch overlaps with PostgreSQL writing this
    one."""
    total = sum(ends[tp] - starts[tp] for tp in starts)
    batches: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=2)
    reading = asyncio.create_task(_read(consumer, starts, ends, batches))
    skipped = 0
    try:
        async with pool.acquire() as conn:
            await conn.execute(f"SET search_path = {shadow}, public")
            try:
                while (batch := await batches.get()) is not None:
                    async with conn.transaction():
                        await projection.apply(conn, batch.envelopes)
                    skipped += batch.skipped
                    progress(batch.done, total)
            finally:
                await conn.execute("RESET search_path")
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    return skipped


@contextlib.contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """The replay keeps batches of thousands of decoded events alive, which Python's cycle
    collector would scan again and again: it took half the rebuild's CPU time. Decoded events
    hold no reference cycles (reference counting frees them), so pause it for the replay."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _copy_rows(conn: Connection, source: str, target: str) -> None:
    """Copy every row of `source` into the empty `target`, dropping the target's indexes
    (and the keys they back) first and building them again after: building an index once
    from all the rows takes half the time of maintaining it row by row."""
    indexes = await conn.fetch(
        """SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS index,
                  c.conname AS key, pg_get_constraintdef(c.oid) AS definition
           FROM pg_index i
           LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
           WHERE i.indrelid = $1::regclass""",
        target,
    )
    for index in indexes:
        if index["key"]:
            await conn.execute(f'ALTER TABLE {target} DROP CONSTRAINT "{index["key"]}"')
        else:
            await conn.execute(f"DROP INDEX {index['name']}")
    await conn.execute(f"INSERT INTO {target} SELECT * FROM {source}")
    for index in indexes:
        if index["key"]:
            await conn.execute(
                f'ALTER TABLE {target} ADD CONSTRAINT "{index["key"]}" {index["definition"]}'
            )
        else:
            await conn.execute(index["index"])

"""The projection runner lets a steady stream's events gather between its polls (one
transaction for several), and a read waiting for a projection is not held by that wait."""

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest

from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topics import declare
from projections.db import Connection
from projections.runner import Projection, ProjectionRunner
from projections.watermarks import Watermarks
from services.coupons.bus import kafka
from services.coupons.settings import Settings
from tests.integration.test_projection_restart import event, prepare, stop, wait_for_rows

pytestmark = pytest.mark.integration


async def count_poll(conn: Connection, envelopes: Sequence[Envelope[Event]]) -> None:
    """One row per poll that applied events, with how many it held."""
    await conn.execute("INSERT INTO polls (events) VALUES ($1)", len(envelopes))
    await conn.execute(
        "INSERT INTO applied (event_id, times) SELECT unnest($1::uuid[]), 1",
        [e.id for e in envelopes],
    )


POLLS = Projection("polls", count_poll)


async def prepared(settings: Settings) -> asyncpg.Pool:
    pool = await prepare(settings)
    await pool.execute("CREATE TABLE polls (events int NOT NULL)")
    return pool


async def test_a_steady_stream_is_applied_in_few_polls(settings: Settings) -> None:
    """40 events 25 ms apart, the runner lingering 300 ms after each poll: a handful of
    transactions, not one per event, and every event applied once."""
    pool = await prepared(settings)
    topics = declare(settings.topic_prefix, settings.partitions)
    runner = ProjectionRunner([POLLS], settings.kafka_bootstrap_servers, topics, pool, linger_s=0.3)
    task = asyncio.create_task(runner.run())
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        events = [event(i) for i in range(40)]
        for envelope in events:
            await producer.send_and_wait(
                topics.events.name, envelope.to_bytes(), key=envelope.key.encode()
            )
            await asyncio.sleep(0.025)
        await wait_for_rows(pool, len(events))
        polls = await pool.fetch("SELECT events FROM polls")
        assert sum(r["events"] for r in polls) == len(events)
        assert len(polls) <= 12, [r["events"] for r in polls]
    finally:
        await producer.stop()
        await stop(task)
        await pool.close()


async def test_a_read_waiting_for_a_projection_cuts_the_linger_short(
    settings: Settings,
) -> None:
    """The runner lingers 30 s after a poll; a read waiting for the next event
    (`Watermarks.wait`, as a command's read-back does) has it in well under that."""
    pool = await prepared(settings)
    topics = declare(settings.topic_prefix, settings.partitions)
    watermarks = Watermarks(settings.database_url, topics.events.name, pool)
    await watermarks.start()
    runner = ProjectionRunner(
        [POLLS],
        settings.kafka_bootstrap_servers,
        topics,
        pool,
        awaited=watermarks.awaited,
        linger_s=30,
    )
    task = asyncio.create_task(runner.run())
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        first, second = event(1), event(2)
        await producer.send_and_wait(topics.events.name, first.to_bytes(), key=b"k")
        await wait_for_rows(pool, 1)  # applied: the runner now lingers
        sent = await producer.send_and_wait(topics.events.name, second.to_bytes(), key=b"k")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await watermarks.wait("polls", sent.partition, sent.offset, timeout_s=10)
        assert loop.time() - started < 5
        assert await pool.fetchval("SELECT count(*) FROM applied") == 2
    finally:
        await producer.stop()
        await stop(task)
        await watermarks.stop()
        await pool.close()


async def test_a_backlog_is_read_without_lingering(settings: Settings) -> None:
    """10,000 events already in the log, the runner lingering 2 s after a small poll: the
    backlog's polls (a fetch brings some 1,250 of them, taken 1,000 then the rest) go on at
    once; with a wait after each it would take over 20 s."""
    pool = await prepared(settings)
    topics = declare(settings.topic_prefix, settings.partitions)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        sent = [
            await producer.send(topics.events.name, event(i).to_bytes(), key=b"k")
            for i in range(10_000)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    runner = ProjectionRunner([POLLS], settings.kafka_bootstrap_servers, topics, pool, linger_s=2)
    started = asyncio.get_running_loop().time()
    task = asyncio.create_task(runner.run())
    try:
        await wait_for_rows(pool, 10_000, timeout_s=14)
        assert asyncio.get_running_loop().time() - started < 14
    finally:
        await stop(task)
        await pool.close()

"""A projection consumer restarted mid-stream neither loses nor double-applies an event,
and an unreadable event goes to the dead-letter topic without stopping the projection."""

import asyncio
import contextlib
import random

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.envelope import Envelope
from contracts.events import CampaignDefined, Event
from contracts.money import AmountOff
from contracts.topics import declare
from projections.db import Connection
from projections.offsets import LostOwnership, StoredOffsets, stored_offsets
from projections.runner import Projection, ProjectionRunner, each
from services.coupons.bus import kafka
from services.coupons.bus.topics import ensure_topics
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate

pytestmark = pytest.mark.integration

COUNT = 300


async def count_event(conn: Connection, envelope: Envelope[Event]) -> None:
    """Deliberately not idempotent: applying an event twice shows as a count of 2."""
    await conn.execute(
        """INSERT INTO applied (event_id, times) VALUES ($1, 1)
           ON CONFLICT (event_id) DO UPDATE SET times = applied.times + 1""",
        envelope.id,
    )


COUNTING = Projection("counting", each(count_event))


def event(i: int) -> Envelope[Event]:
    data = CampaignDefined(
        campaign_id=f"c{i}", name=f"n{i}", discount=AmountOff(amount_off=100, currency="EUR")
    )
    return Envelope[Event](key=f"c{i}", correlation_id=f"corr-{i}", data=data)


async def prepare(settings: Settings) -> asyncpg.Pool:
    topics = declare(settings.topic_prefix, settings.partitions)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    pool = await asyncpg.create_pool(settings.database_url)
    async with pool.acquire() as conn:
        await migrate(conn)
        await conn.execute("CREATE TABLE applied (event_id uuid PRIMARY KEY, times int NOT NULL)")
    return pool


async def publish(settings: Settings, events: list[Envelope[Event]], pace_s: float = 0.0) -> None:
    topics = declare(settings.topic_prefix, settings.partitions)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for envelope in events:
            await producer.send_and_wait(
                topics.events.name, envelope.to_bytes(), key=envelope.key.encode()
            )
            if pace_s:
                await asyncio.sleep(pace_s)
    finally:
        await producer.stop()


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel a runner's task and wait for it to end."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_for_rows(
    pool: asyncpg.Pool, expected: int, timeout_s: float = 60, table: str = "applied"
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if await pool.fetchval(f"SELECT count(*) FROM {table}") >= expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {expected} events applied after {timeout_s}s")


async def test_restarts_mid_stream_lose_nothing_and_apply_nothing_twice(settings: Settings) -> None:
    pool = await prepare(settings)
    topics = declare(settings.topic_prefix, settings.partitions)
    events = [event(i) for i in range(COUNT)]
    producing = asyncio.create_task(publish(settings, events, pace_s=0.005))
    rng = random.Random(7)
    try:
        for _ in range(4):  # stop the consumer at random points while events flow
            runner = ProjectionRunner([COUNTING], settings.kafka_bootstrap_servers, topics, pool)
            task = asyncio.create_task(runner.run())
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            await stop(task)
        await producing
        runner = ProjectionRunner([COUNTING], settings.kafka_bootstrap_servers, topics, pool)
        task = asyncio.create_task(runner.run())
        await wait_for_rows(pool, COUNT)
        await asyncio.sleep(0.5)  # a double application would show up now
        await stop(task)
        rows = await pool.fetch("SELECT event_id, times FROM applied")
        assert {r["event_id"] for r in rows} == {e.id for e in events}
        assert {r["times"] for r in rows} == {1}
        stored = await pool.fetchval(
            "SELECT sum(next_offset) FROM projection_offsets WHERE projection = 'counting'"
        )
        assert stored == COUNT
    finally:
        producing.cancel()
        await pool.close()


async def test_a_zombie_consumer_cannot_apply_an_event_twice(settings: Settings) -> None:
    """Two runners that each believe they own every partition (different consumer groups,
    as a zombie after a lost rebalance would) still apply each event exactly once: the
    stored offset is advanced by compare-and-set in the same transaction as the rows."""
    pool = await prepare(settings)
    topics = declare(settings.topic_prefix, settings.partitions)
    events = [event(i) for i in range(COUNT)]
    runners = [
        ProjectionRunner(
            [COUNTING], settings.kafka_bootstrap_servers, topics, pool, group_id=f"g{i}"
        )
        for i in range(2)
    ]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        await publish(settings, events)
        await wait_for_rows(pool, COUNT)
        await asyncio.sleep(1)
        rows = await pool.fetch("SELECT times FROM applied")
        assert len(rows) == COUNT
        assert {r["times"] for r in rows} == {1}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()


async def test_an_unreadable_event_is_dead_lettered_and_the_projection_moves_on(
    settings: Settings,
) -> None:
    pool = await prepare(settings)
    topics = declare(settings.topic_prefix, 1)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    good = event(1)
    await producer.send_and_wait(
        topics.events.name, b'{"not": "an envelope"}', key=b"c1", partition=0
    )
    await producer.send_and_wait(topics.events.name, good.to_bytes(), key=b"c1", partition=0)
    await producer.stop()
    runner = ProjectionRunner([COUNTING], settings.kafka_bootstrap_servers, topics, pool)
    task = asyncio.create_task(runner.run())
    dead = AIOKafkaConsumer(
        topics.dead_letters.name,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await dead.start()
    try:
        await wait_for_rows(pool, 1)
        assert await pool.fetchval("SELECT event_id FROM applied") == good.id
        parked = await asyncio.wait_for(dead.getone(), 10)
        headers = dict(parked.headers)
        assert parked.value == b'{"not": "an envelope"}'
        assert headers["reason"] == b"not_an_envelope"
        assert headers["source_topic"] == topics.events.name.encode()
        assert headers["source_offset"] == b"0"
    finally:
        await stop(task)
        await dead.stop()
        await pool.close()


async def count_late_event(conn: Connection, envelope: Envelope[Event]) -> None:
    await conn.execute(
        """INSERT INTO applied_late (event_id, times) VALUES ($1, 1)
           ON CONFLICT (event_id) DO UPDATE SET times = applied_late.times + 1""",
        envelope.id,
    )


async def test_each_projection_applies_from_its_own_stored_offset(settings: Settings) -> None:
    """One consumer serves several projections from the lowest of their stored offsets. One
    whose offset stands ahead skips what it already has; one whose offset a rebuild moves
    back applies again from there, and only it: nothing else is applied twice."""
    pool = await prepare(settings)
    await pool.execute("CREATE TABLE applied_late (event_id uuid PRIMARY KEY, times int NOT NULL)")
    late = Projection("late", each(count_late_event))
    topics = declare(settings.topic_prefix, settings.partitions)
    events = [event(i) for i in range(100)]
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    for envelope in events:
        await producer.send(topics.events.name, envelope.to_bytes(), partition=0)
    await producer.stop()
    await pool.execute(
        """INSERT INTO projection_offsets (projection, topic, partition, next_offset)
           VALUES ('late', $1, 0, 60)""",
        topics.events.name,
    )
    runner = ProjectionRunner([COUNTING, late], settings.kafka_bootstrap_servers, topics, pool)
    task = asyncio.create_task(runner.run())

    async def late_rows() -> dict[int, int]:
        rows = await pool.fetch("SELECT event_id, times FROM applied_late")
        index = {e.id: i for i, e in enumerate(events)}
        return {index[r["event_id"]]: r["times"] for r in rows}

    try:
        await wait_for_rows(pool, 100)
        await asyncio.sleep(0.5)
        assert await late_rows() == dict.fromkeys(range(60, 100), 1)
        # what a rebuild does: move one projection's stored offset, here back to 50
        await pool.execute(
            "UPDATE projection_offsets SET next_offset = 50 WHERE projection = 'late'"
            " AND partition = 0"
        )
        await wait_for_rows(pool, 50, table="applied_late")
        await asyncio.sleep(0.5)
        assert await late_rows() == dict.fromkeys(range(50, 60), 1) | dict.fromkeys(
            range(60, 100), 2
        )
        rows = await pool.fetch("SELECT times FROM applied")
        assert len(rows) == 100 and {r["times"] for r in rows} == {1}
    finally:
        await stop(task)
        await pool.close()


async def test_stored_offsets_of_several_partitions_move_together_or_not_at_all(
    settings: Settings,
) -> None:
    """A consumer's poll moves every partition it read in one compare-and-set: when any one
    of them moved under it (a zombie's commit), none moves and the poll does not commit."""
    pool = await prepare(settings)
    offsets = StoredOffsets(pool, "several", "some-topic")
    await offsets.load({TopicPartition("some-topic", p) for p in (0, 1, 2)})
    try:
        async with pool.acquire() as conn, conn.transaction():
            await offsets.advance(conn, {0: (0, 5), 1: (0, 7), 2: (0, 1)})
        async with pool.acquire() as conn:
            assert await stored_offsets(conn, "several", "some-topic") == {0: 5, 1: 7, 2: 1}
            with pytest.raises(LostOwnership):
                async with conn.transaction():
                    await offsets.advance(conn, {0: (5, 9), 1: (6, 8)})  # 1 is at 7, not 6
            assert await stored_offsets(conn, "several", "some-topic") == {0: 5, 1: 7, 2: 1}
    finally:
        await pool.close()

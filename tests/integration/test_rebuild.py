"""Rebuilding a projection from the topic gives the rows the live projector wrote, and a
projector killed with SIGKILL mid-stream resumes to exactly those rows too."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from aiokafka import TopicPartition

from contracts.events import CodeDistributed, CodeRedeemed, RedemptionRefunded, RedemptionReversed
from contracts.topics import declare
from projections import ledger
from services.coupons.bus import kafka
from services.coupons.bus.topics import ensure_topics
from services.coupons.rebuilds import REBUILDABLE, rebuild_projections
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate
from services.devstack.audit import projection_tables
from services.devstack.workload import mixed_events
from tests.integration.helpers import send

pytestmark = pytest.mark.integration


async def indexes(settings: Settings) -> list[tuple[str, str]]:
    """The rebuildable tables' indexes and the keys they back: the swap rebuilds them."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            """SELECT pg_get_indexdef(i.indexrelid), coalesce(pg_get_constraintdef(c.oid), '')
               FROM pg_index i
               LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
               WHERE i.indrelid::regclass::text = ANY($1::text[]) ORDER BY 1""",
            [table for projection in REBUILDABLE.values() for table in projection.tables],
        )
        return [(r[0], r[1]) for r in rows]
    finally:
        await conn.close()


async def caught_up(settings: Settings, timeout_s: float = 60) -> None:
    """Every rebuildable projection has stored the topic's end offset of every partition: its
    high watermark, which a transaction's events reach before its commit markers do."""
    topic = declare(settings.topic_prefix, settings.partitions).events.name
    consumer = kafka.reader(settings.kafka_bootstrap_servers, committed_only=False)
    await consumer.start()
    conn = await asyncpg.connect(settings.database_url)
    await migrate(conn)  # the projector may not have created the tables yet
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        for _ in range(int(timeout_s / 0.2)):
            ends = sum((await consumer.end_offsets(tps)).values())
            stored = await conn.fetch(
                """SELECT projection, sum(next_offset) AS at FROM projection_offsets
                   WHERE topic = $1 GROUP BY projection""",
                topic,
            )
            behind = {r["projection"]: r["at"] for r in stored if r["projection"] in REBUILDABLE}
            if len(behind) == len(REBUILDABLE) and all(at == ends for at in behind.values()):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"projections not caught up: {behind} of {ends}")
    finally:
        await conn.close()
        await consumer.stop()


def projector(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "COUPONS_TOPIC_PREFIX": settings.topic_prefix,
        "COUPONS_PARTITIONS": str(settings.partitions),
        "COUPONS_PORT": "0",
        "COUPONS_COMPONENTS": "projector",
    }
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.coupons.cli", "serve"],
            env=env,
            stdout=out,
            stderr=out,
        )


def expected_ledger(count: int, seed: int) -> dict[str, tuple[str, str | None, int, bool]]:
    """An oracle in plain Python: per redemption, its attribution (the latest distribution of
    its code to its contact before it, else direct), refunds, and whether it was reversed."""
    latest: dict[tuple[str, str, str], tuple[str, str | None]] = {}
    ledger: dict[str, tuple[str, str | None, int, bool]] = {}
    for envelope in mixed_events(count, seed=seed):
        match envelope.data:
            case CodeDistributed() as e:
                latest[e.campaign_id, e.code, e.contact_id] = (e.channel, e.source_ref)
            case CodeRedeemed() as e:
                channel, ref = latest.get((e.campaign_id, e.code, e.contact_id), ("direct", None))
                ledger[e.redemption_id] = (channel, ref, 0, False)
            case RedemptionRefunded() as e:
                channel, ref, refunded, gone = ledger[e.redemption_id]
                ledger[e.redemption_id] = (channel, ref, refunded + e.refunded, gone)
            case RedemptionReversed() as e:
                ledger[e.redemption_id] = (*ledger[e.redemption_id][:3], True)
    return ledger


async def test_a_rebuild_equals_the_live_rows_after_a_mixed_workload(
    settings: Settings, tmp_path: Path
) -> None:
    await ensure_topics(
        settings.kafka_bootstrap_servers, declare(settings.topic_prefix, settings.partitions), 1
    )
    live = projector(settings, tmp_path / "projector.log")
    try:
        await send(settings, 1500, seed=1, unreadable=3)
        await caught_up(settings)
        before = await projection_tables(settings)
        assert all(before.values()), {t: len(rows) for t, rows in before.items()}
        keys = await indexes(settings)
        assert len(keys) >= 10
        conn = await asyncpg.connect(settings.database_url)
        rows = await conn.fetch(
            """SELECT redemption_id, channel, source_ref, refunded, reversed_at IS NOT NULL AS gone
               FROM analytics.redemption_ledger"""
        )
        await conn.close()
        assert {r[0]: tuple(r[1:]) for r in rows} == expected_ledger(1500, seed=1)
        rebuilt = await rebuild_projections(settings, [], show_progress=False)
        assert {r.projection: r.skipped for r in rebuilt} == dict.fromkeys(REBUILDABLE, 3)
        assert await projection_tables(settings) == before
        assert await indexes(settings) == keys
        # Events appended during a rebuild: the live projector applies them, the swap moves
        # its offsets back under it, and it applies them again on top of the rebuilt rows.
        await asyncio.gather(
            rebuild_projections(settings, [], show_progress=False),
            send(settings, 300, seed=2, chunks=10),
        )
        await caught_up(settings)
        after_more = await projection_tables(settings)
    finally:
        live.terminate()
        live.wait(timeout=30)
    await rebuild_projections(settings, [], show_progress=False)
    assert await projection_tables(settings) == after_more


async def test_a_projector_killed_mid_stream_resumes_to_the_rows_of_a_fresh_rebuild(
    settings: Settings, tmp_path: Path
) -> None:
    await ensure_topics(
        settings.kafka_bootstrap_servers, declare(settings.topic_prefix, settings.partitions), 1
    )
    log = tmp_path / "projector.log"
    first = projector(settings, log)
    stream = asyncio.create_task(send(settings, 3000, seed=3, chunks=30))
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        for _ in range(300):  # kill it once it has applied part of the stream
            if await conn.fetchval("SELECT count(*) FROM ledger") > 200:
                break
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        applied_when_killed = await conn.fetchval("SELECT count(*) FROM ledger")
    finally:
        await conn.close()
    await stream
    second = projector(settings, log)
    try:
        await caught_up(settings)
    finally:
        second.terminate()
        second.wait(timeout=30)
    live = await projection_tables(settings)
    assert 0 < applied_when_killed < len(live["ledger"])
    await rebuild_projections(settings, [], show_progress=False)
    assert await projection_tables(settings) == live


async def test_a_quiet_projector_follows_offsets_moved_under_it(
    settings: Settings, tmp_path: Path
) -> None:
    await ensure_topics(
        settings.kafka_bootstrap_servers, declare(settings.topic_prefix, settings.partitions), 1
    )
    live = projector(settings, tmp_path / "projector.log")
    try:
        await send(settings, 300, seed=4)
        await caught_up(settings)
        before = await projection_tables(settings)
        conn = await asyncpg.connect(settings.database_url)
        async with conn.transaction():  # what a swap does, with no event to follow
            await conn.execute(
                "UPDATE projection_offsets SET next_offset = 0 WHERE projection = 'ledger'"
            )
            await conn.execute(f"TRUNCATE {', '.join(ledger.TABLES)}")
        await conn.close()
        await caught_up(settings)
        assert await projection_tables(settings) == before
    finally:
        live.terminate()
        live.wait(timeout=30)

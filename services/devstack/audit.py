"""After a rehearsal of faults: is every accepted request in the event log and in the ledger
exactly once, is every cap exact, and do the read models equal a rebuild from the log? Each
check returns the problems it found (an empty list: none). Used by `make chaos`
(`bench/chaos.py`), `bench/replicas.py` and `tests/integration/test_replicas.py`."""

import asyncio
from collections import Counter
from collections.abc import Iterable
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from contracts.codec import EVENTS
from contracts.events import CodeRedeemed, Event
from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.rebuilds import REBUILDABLE, rebuild_projections
from services.coupons.settings import Settings


async def high_watermarks(settings: Settings) -> dict[TopicPartition, int]:
    """The event topic's end per partition, transactions in flight included."""
    topic = declare(settings.topic_prefix, settings.partitions).events.name
    tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
    reader = kafka.reader(settings.kafka_bootstrap_servers, committed_only=False)
    await reader.start()
    try:
        ends: dict[TopicPartition, int] = await reader.end_offsets(tps)
        return ends
    finally:
        await reader.stop()


async def logged_events(settings: Settings) -> list[Event]:
    """Every committed event of the log, up to its high watermarks (read after the load has
    stopped, so no transaction is left open)."""
    ends = await high_watermarks(settings)
    reader = kafka.reader(settings.kafka_bootstrap_servers)
    await reader.start()
    try:
        reader.assign(list(ends))
        found: list[Event] = []
        while [tp for tp in ends if await reader.position(tp) < ends[tp]]:
            for records in (await reader.getmany(timeout_ms=500)).values():
                found.extend(EVENTS.decode(r.value).data for r in records)
        return found
    finally:
        await reader.stop()


async def projections_caught_up(settings: Settings, timeout_s: float = 120) -> None:
    """Wait until every rebuildable projection has stored the event topic's high watermark."""
    ends = await high_watermarks(settings)
    total = sum(ends.values())
    topic = declare(settings.topic_prefix, settings.partitions).events.name
    conn = await asyncpg.connect(settings.database_url)
    try:
        stored: dict[str, int] = {}
        for _ in range(int(timeout_s / 0.2)):
            rows = await conn.fetch(
                """SELECT projection, sum(next_offset) AS at FROM projection_offsets
                   WHERE topic = $1 GROUP BY projection""",
                topic,
            )
            stored = {r["projection"]: r["at"] for r in rows if r["projection"] in REBUILDABLE}
            if len(stored) == len(REBUILDABLE) and all(at >= total for at in stored.values()):
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"projections not caught up in {timeout_s:g} s: {stored} of {total}")
    finally:
        await conn.close()


async def stripe_handled(
    settings: Settings, event_ids: Iterable[str], timeout_s: float = 120
) -> None:
    """Wait until the Stripe translator has handled every one of these Stripe events: its
    commands are decided (and their events appended) before it records an event handled."""
    wanted = list(event_ids)
    conn = await asyncpg.connect(settings.database_url)
    try:
        handled = 0
        for _ in range(int(timeout_s / 0.2)):
            query = "SELECT count(*) FROM stripe_events WHERE event_id = ANY($1::text[])"
            handled = await conn.fetchval(query, wanted)
            if handled == len(wanted):
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the translator handled {handled} of {len(wanted)} Stripe events")
    finally:
        await conn.close()


async def ledger_ids(settings: Settings, campaign_ids: Iterable[str]) -> list[str]:
    """The redemption ids of the ledger (the analysts' read model) for these campaigns."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT redemption_id FROM ledger WHERE campaign_id = ANY($1::text[])",
            list(campaign_ids),
        )
        return [r["redemption_id"] for r in rows]
    finally:
        await conn.close()


def exactly_once(
    what: str, accepted: set[str], logged: Iterable[str], ledger: Iterable[str]
) -> list[str]:
    """Every accepted id once in the log and once in the ledger, and nothing else there."""
    problems = []
    for where, ids in (("event log", Counter(logged)), ("ledger", Counter(ledger))):
        missing = accepted - ids.keys()
        doubled = [i for i, n in ids.items() if n > 1]
        extra = ids.keys() - accepted
        if missing:
            problems.append(f"{what}: {len(missing)} accepted but not in the {where}")
        if doubled:
            problems.append(f"{what}: {len(doubled)} more than once in the {where}")
        if extra:
            problems.append(f"{what}: {len(extra)} in the {where} but never accepted")
    return problems


def redeemed(events: list[Event], campaign_id: str) -> list[CodeRedeemed]:
    return [e for e in events if isinstance(e, CodeRedeemed) and e.campaign_id == campaign_id]


def per_contact_exact(what: str, events: list[CodeRedeemed], limit: int) -> list[str]:
    counts = Counter(e.contact_id for e in events)
    over = {c: n for c, n in counts.items() if n > limit}
    return [f"{what}: {len(over)} contacts over their limit of {limit}"] if over else []


async def projection_tables(settings: Settings) -> dict[str, list[Any]]:
    """Every row of every rebuildable projection's tables, in a stable order."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        return {
            table: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} t ORDER BY t::text")]
            for projection in REBUILDABLE.values()
            for table in projection.tables
        }
    finally:
        await conn.close()


async def read_models_equal_a_rebuild(settings: Settings) -> list[str]:
    """Rebuild every rebuildable projection from the log (`coupons projections rebuild`) and
    compare its rows with the live ones; call it once the projections have caught up."""
    live = await projection_tables(settings)
    await rebuild_projections(settings, [], show_progress=False)
    rebuilt = await projection_tables(settings)
    return [
        f"read model {table}: {len(live[table])} live rows differ from "
        f"{len(rebuilt[table])} rebuilt ({len(set(live[table]) ^ set(rebuilt[table]))} differ)"
        for table in live
        if live[table] != rebuilt[table]
    ]

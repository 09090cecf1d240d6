"""Projections: rebuild throughput from the topic, and end-to-end lag under a steady stream.

    python bench/read_models.py [--events N] [--runs R] [--rate E] [--seconds S]

1. Rebuild: N mixed events (distributions, redemptions, reversals, refunds, refusals) are
   produced straight to the event topic, then `usage`, `contacts` and `ledger` are each
   rebuilt R times (replay into shadow tables, then the swap): events/s per projection.
2. Lag: a projector process (`coupons serve`, COUPONS_COMPONENTS=projector, every
   projection) follows a fresh topic; once it owns every partition and has applied the
   campaigns' definitions and codes (timed apart), E events/s are appended for S seconds.
   An event is visible when its projection's transaction commits: the `projection_progress`
   notification sent in that transaction. Lag = notification received - append
   acknowledged, per event and projection; p50/p99 per run, median over R runs.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from itertools import islice
from pathlib import Path

import asyncpg
import uvloop
from aiokafka import AIOKafkaProducer

from contracts.topics import declare
from projections.runner import PROGRESS_CHANNEL
from services.coupons.bus.topics import ensure_topics
from services.coupons.rebuilds import rebuild_projections
from services.coupons.runtime import PROJECTIONS
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate
from services.devstack.stack import default_state_dir, provisioned
from services.devstack.workload import mixed_events

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 6
CAMPAIGNS = 200


async def fresh(kafka: str, base_url: str) -> Settings:
    tag = uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(base_url)
    try:
        await conn.execute(f'CREATE DATABASE "bench_{tag}"')
    finally:
        await conn.close()
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=kafka,
        DATABASE_URL=base_url.rsplit("/", 1)[0] + f"/bench_{tag}",
        COUPONS_TOPIC_PREFIX=f"bench{tag}.",
        COUPONS_PARTITIONS=PARTITIONS,
    )
    await ensure_topics(kafka, declare(settings.topic_prefix, PARTITIONS), 1)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return settings


def producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=1 << 20,
    )


async def fill(settings: Settings, count: int) -> float:
    topic = declare(settings.topic_prefix, PARTITIONS).events.name
    out = producer(settings)
    await out.start()
    started = time.monotonic()
    try:
        for envelope in mixed_events(count, campaigns=CAMPAIGNS):
            await out.send(topic, envelope.to_bytes(), key=envelope.key.encode())
        await out.flush()
    finally:
        await out.stop()
    return time.monotonic() - started


async def rebuilds(settings: Settings, runs: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {}
    for run in range(runs):
        for rebuilt in await rebuild_projections(settings, [], show_progress=False):
            rate = rebuilt.events / rebuilt.seconds
            rates.setdefault(rebuilt.projection, []).append(rate)
            print(
                f"  rebuild run {run + 1} {rebuilt.projection}: {rebuilt.events:,} events"
                f" in {rebuilt.seconds:.1f} s = {rate:,.0f}/s",
                flush=True,
            )
    return rates


async def lag_run(settings: Settings, rate: int, seconds: float) -> dict[str, list[float]]:
    """Lags in ms per projection for every event appended at `rate` per second."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "COUPONS_TOPIC_PREFIX": settings.topic_prefix,
        "COUPONS_PARTITIONS": str(PARTITIONS),
        "COUPONS_PORT": "0",
        "COUPONS_COMPONENTS": "projector",
        "COUPONS_LOG_LEVEL": "WARNING",
    }
    projector = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.coupons.cli",
        "serve",
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[tuple[str, int], list[tuple[float, int]]] = {}

    def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        name, partition, next_offset = payload.rsplit(":", 2)
        seen.setdefault((name, int(partition)), []).append((time.monotonic(), int(next_offset)))

    listener = await asyncpg.connect(settings.database_url)
    await listener.add_listener(PROGRESS_CHANNEL, heard)
    topic = declare(settings.topic_prefix, PARTITIONS).events.name
    out = producer(settings)
    await out.start()
    appended: list[tuple[int, int, float]] = []  # partition, offset, acknowledged at

    async def append(payload: bytes, key: bytes) -> None:
        meta = await out.send_and_wait(topic, payload, key=key)
        appended.append((meta.partition, meta.offset, time.monotonic()))

    try:
        await assigned(listener, len(PROJECTIONS) * PARTITIONS)
        events = mixed_events(int(rate * seconds), campaigns=CAMPAIGNS)
        # The campaigns and their codes first, applied before the clock starts: the lag is
        # that of the steady flow (distributions, redemptions, ...), not of 200 campaigns
        # defined within 0.2 s. How long that burst takes is printed apart.
        setup = list(islice(events, 2 * CAMPAIGNS))
        started = time.monotonic()
        for envelope in setup:
            await out.send(topic, envelope.to_bytes(), key=envelope.key.encode())
        await out.flush()
        await applied(listener, len(setup))
        print(
            f"  setup: {len(setup)} events (campaigns and their codes) applied by every"
            f" projection in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        started = time.monotonic()
        pending = []
        for i, envelope in enumerate(events):
            due = started + i / rate
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            pending.append(asyncio.create_task(append(envelope.to_bytes(), envelope.key.encode())))
        await asyncio.gather(*pending)
        await asyncio.sleep(3)
    finally:
        await out.stop()
        await listener.close()
        projector.terminate()
        await projector.wait()
    lags: dict[str, list[float]] = {}
    for (name, partition), progress in seen.items():
        progress.sort()
        for p, offset, at in appended:
            if p != partition:
                continue
            visible = next((t for t, nxt in progress if nxt > offset), None)
            if visible is not None:
                lags.setdefault(name, []).append((visible - at) * 1000)
    return lags


async def assigned(conn: asyncpg.Connection, partitions: int, timeout_s: float = 60) -> None:
    """Wait until every projection of the projector owns its partitions (the stored offsets
    it creates on assignment), so the lag measured is the steady state, not its start-up."""
    deadline = time.monotonic() + timeout_s
    while await conn.fetchval("SELECT count(*) FROM projection_offsets") < partitions:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the projector did not own {partitions} partitions in time")
        await asyncio.sleep(0.2)


async def applied(conn: asyncpg.Connection, events: int, timeout_s: float = 120) -> None:
    """Wait until every projection has applied the first `events` events of the topic."""
    deadline = time.monotonic() + timeout_s
    while True:
        behind = await conn.fetchval(
            """SELECT count(*) FROM (SELECT sum(next_offset) AS at FROM projection_offsets
                                     GROUP BY projection) p WHERE at < $1""",
            events,
        )
        if behind == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the projections did not apply {events} events in time")
        await asyncio.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(args: argparse.Namespace, kafka: str, database_url: str) -> None:
    settings = await fresh(kafka, database_url)
    filled = await fill(settings, args.events)
    print(f"produced {args.events:,} events in {filled:.1f} s", flush=True)
    rates = await rebuilds(settings, args.runs)
    for name, values in rates.items():
        print(f"rebuild {name}: {statistics.median(values):,.0f} events/s (median of {args.runs})")
    p50s: dict[str, list[float]] = {}
    p99s: dict[str, list[float]] = {}
    for run in range(args.runs):
        lags = await lag_run(await fresh(kafka, database_url), args.rate, args.seconds)
        for name, values in sorted(lags.items()):
            p50s.setdefault(name, []).append(pct(values, 0.5))
            p99s.setdefault(name, []).append(pct(values, 0.99))
            print(
                f"  lag run {run + 1} {name}: {len(values):,} events, p50 {pct(values, 0.5):.0f}"
                f" ms, p99 {pct(values, 0.99):.0f} ms, max {max(values):.0f} ms",
                flush=True,
            )
    for name in sorted(p99s):
        print(
            f"lag {name} at {args.rate:,} events/s: p50 {statistics.median(p50s[name]):.0f} ms,"
            f" p99 {statistics.median(p99s[name]):.0f} ms (medians of {args.runs} runs)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    state = default_state_dir() / "bench-proj"
    with provisioned(state, kafka_port=31492, pg_port=31832, database="bench") as found:
        # uvloop, as the service and `coupons projections rebuild` run.
        uvloop.run(main_async(args, found.kafka_bootstrap_servers, found.database_url))


if __name__ == "__main__":
    main()

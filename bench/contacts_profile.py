"""Profile the contacts processor on a seeded backlog: contact events on
`growthos.contact-events.v1` and K live segments, then the processor (in this process, under
cProfile) until its stored offsets reach the end. Prints events/s and the top functions, for
both workloads of bench/contact_workloads.py: N first-sight events (N new contacts), then M
steady-state events on those N contacts.

    python bench/contacts_profile.py [--events N] [--steady M] [--segments K] [--consumers C]
                                     [--no-profile] [--top T] [--runs R]

Its own Kafka and PostgreSQL (COUPONS_KAFKA_PORT / COUPONS_PG_PORT / COUPONS_STATE_DIR, default
ports 30392/30732 as bench/contacts.py), a fresh database and topic prefix per run."""

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from contact_workloads import Steady, first_sight
from contacts import segments

from contracts.topics import declare
from services.coupons.bus.topics import ensure_topics
from services.coupons.contacts.processor import contacts_processor
from services.coupons.store.migrate import migrate
from services.devstack.stack import default_state_dir, provisioned

PARTITIONS = 6


async def append(kafka: str, topic: str, events: Iterable[tuple[bytes, bytes]]) -> None:
    out = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
    await out.start()
    for key, value in events:
        await out.send(topic, value, key=key)
    await out.flush()
    await out.stop()


async def drain(
    args: argparse.Namespace,
    conn: asyncpg.Connection,
    run: Callable[[], Awaitable[None]],
    to: int,
) -> tuple[float, cProfile.Profile]:
    """Run the processor (`run`) until its stored offsets reach `to`: seconds, profile."""
    profiler = cProfile.Profile()
    started = time.monotonic()
    if args.profile:
        profiler.enable()
    task = asyncio.ensure_future(run())
    query = """SELECT coalesce(sum(next_offset), 0) FROM projection_offsets
               WHERE projection = 'contacts'"""
    while True:
        if await conn.fetchval(query) >= to:
            break
        await asyncio.sleep(0.1)
    seconds = time.monotonic() - started
    profiler.disable()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return seconds, profiler


async def run(args: argparse.Namespace, kafka: str, base_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(base_url)
    await admin.execute(f'CREATE DATABASE "cp_{tag}"')
    await admin.close()
    db = base_url.rsplit("/", 1)[0] + f"/cp_{tag}"
    topics = declare(f"cp{tag}.", PARTITIONS)
    await ensure_topics(kafka, topics, 1)
    conn = await asyncpg.connect(db)
    await migrate(conn)
    await segments(args.segments, seed="kafka", profiles=0)(conn)  # bench/contacts.py's
    pool = await asyncpg.create_pool(db, min_size=1, max_size=4 * args.consumers)
    processors = [contacts_processor(kafka, topics, pool) for _ in range(args.consumers)]

    async def processor() -> None:
        await asyncio.gather(*(p.run() for p in processors))

    steady = Steady(args.events)
    workloads = [
        ("first sight", args.events, first_sight(args.events, time.time())),
        ("steady state", args.steady, steady.events(args.steady, time.time())),
    ]
    done = 0
    for name, count, events in workloads:
        if not count:
            continue
        await append(kafka, topics.contact_events.name, events)
        done += count
        seconds, profiler = await drain(args, conn, processor, done)
        if args.profile:
            print(f"--- {name} ---")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
        print(f"processor, {name}: {count:,} events at {count / seconds:,.0f}/s", flush=True)
    await pool.close()
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000, help="first sight: new contacts")
    parser.add_argument(
        "--steady", type=int, default=100_000, help="steady state: events on those contacts"
    )
    parser.add_argument(
        "--consumers", type=int, default=1, help="processors in the group (tasks, one process)"
    )
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    args = parser.parse_args()
    state = Path(os.environ.get("COUPONS_STATE_DIR", default_state_dir() / "contacts-bench"))
    with provisioned(
        state,
        kafka_port=int(os.environ.get("COUPONS_KAFKA_PORT", "30392")),
        pg_port=int(os.environ.get("COUPONS_PG_PORT", "30732")),
        database="bench",
    ) as found:
        for _ in range(args.runs):
            asyncio.run(run(args, found.kafka_bootstrap_servers, found.database_url))


if __name__ == "__main__":
    main()

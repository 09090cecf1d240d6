"""Profile the contacts processor on a seeded backlog: N contact events on
`growthos.contact-events.v1` and K live segments, then the processor (in this process, under
cProfile) until its stored offsets reach the end. Prints events/s and the top functions.

    python bench/contacts_profile.py [--events N] [--segments K] [--no-profile] [--top T]

Its own Kafka and PostgreSQL (COUPONS_KAFKA_PORT / COUPONS_PG_PORT / COUPONS_STATE_DIR, default
ports 30392/30732 as bench/contacts.py), a fresh database and topic prefix per run."""

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import time
import uuid
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from contacts import segments

from contracts.topics import declare
from services.coupons.bus.topics import ensure_topics
from services.coupons.contacts.processor import contacts_processor
from services.coupons.store.migrate import migrate
from services.devstack.stack import default_state_dir, provisioned

PARTITIONS = 6


def contact_event(n: int, at: float) -> bytes:
    """Contact n's event: the bench's shape (bench/contacts.py), a page view every third."""
    kind = "page.viewed" if n % 3 == 0 else "contact.updated"
    body = {
        "id": f"k{n}",
        "type": kind,
        "contact_id": f"c{n:08d}",
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
        "traits": {"plan": ("free", "pro")[n % 2], "score": n % 100},
        "properties": {"path": "/pricing"} if kind == "page.viewed" else {},
    }
    return json.dumps(body).encode()


async def run(args: argparse.Namespace, kafka: str, base_url: str) -> float:
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
    out = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
    await out.start()
    now = time.time()
    for n in range(args.events):
        await out.send(topics.contact_events.name, contact_event(n, now), key=f"c{n:08d}".encode())
    await out.flush()
    await out.stop()
    pool = await asyncpg.create_pool(db, min_size=1, max_size=4)
    processor = contacts_processor(kafka, topics, pool)
    profiler = cProfile.Profile()
    started = time.monotonic()
    if args.profile:
        profiler.enable()
    task = asyncio.create_task(processor.run())
    while True:
        done = await conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM projection_offsets"
            " WHERE projection = 'contacts'"
        )
        if done >= args.events:
            break
        await asyncio.sleep(0.1)
    seconds = time.monotonic() - started
    profiler.disable()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await pool.close()
    await conn.close()
    if args.profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    return args.events / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
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
            rate = asyncio.run(run(args, found.kafka_bootstrap_servers, found.database_url))
            print(f"processor: {args.events:,} events at {rate:,.0f}/s", flush=True)


if __name__ == "__main__":
    main()

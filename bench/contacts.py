"""Contacts and live segments: ingest, event -> membership message, timer lateness, backfill,
preview, memory. Prints figures; medians of --runs where a phase repeats.

    python bench/contacts.py [--profiles N] [--steady M] [--rate E] [--seconds S] [--segments K]
                             [--consumers C] [--workers W] [--runs R]
                             [--phases kafka,http,latency,timers,backfill,preview]
    python bench/contacts.py --seed copy [--profiles N] [--runs R]   (backfill, preview, memory
        over N profiles COPYed straight into PostgreSQL: bench/contacts_at_scale.py)

A `coupons serve` process (COUPONS_COMPONENTS=contacts) runs against a local Kafka and
PostgreSQL of its own (`bench/service.py`; ports 30392/30732 or COUPONS_KAFKA_PORT and
COUPONS_PG_PORT, state <state dir>/contacts-bench, or KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL).
1. Kafka ingest, both workloads of bench/contact_workloads.py, produced straight to
   `growthos.contact-events.v1`; events/s until the processor's stored offsets reach the end:
   first sight (N events, each a new contact entering about 10.5 of the 21 segments), then
   steady state (M events of the usual mix on those N contacts, about 5 % changing a
   membership).
2. HTTP ingest: N/2 more events through `POST /v1/contact-events` in batches of 1,000, four
   at a time; events/s until 202.
3. Event -> message: K live segments; E events/s for S seconds over 5,000 contacts set up
   just below a segment's boundary, each event flipping its contact in or out of exactly one
   segment (one message an event); latency = the membership message consumed - the event's
   append acknowledged, matched by cause; p50/p99.
4. Timers: contacts whose `within_next` segment entry falls due spread over S seconds;
   lateness = message consumed - due second; p50/p99.
5. Backfill: a new segment over the N profiles, seconds until finished.
6. Preview: `POST /v1/segments/preview` over the N profiles, seconds.
7. Memory: the service process's resident set with N profiles.
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import contacts_at_scale
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from contact_workloads import Keyed, Steady, first_sight
from service import Prepare, Served, serving

from contracts.topics import declare
from projections.db import Connection

PARTITIONS = 6
FLIPPED = 5000
"""Contacts the latency phase moves in and out of a segment."""


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def contact_event(i: str, contact: str, **traits: Any) -> bytes:
    body = {
        "id": i,
        "type": "contact.updated",
        "contact_id": contact,
        "occurred_at": iso(time.time()),
        "traits": traits,
    }
    return json.dumps(body).encode()


async def until(check: Any) -> None:
    """Poll `check` (an async predicate) every 0.2 s until it holds."""
    done = False
    while not done:
        done = await check()
        await asyncio.sleep(0 if done else 0.2)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Bench:
    def __init__(self, kafka: str, database_url: str, prefix: str) -> None:
        self.kafka, self.db, self.prefix = kafka, database_url, prefix
        self.topics = declare(prefix, PARTITIONS)
        self.appended = 0
        """Contact events appended so far: the processor has caught up when its offsets sum
        to this."""

    async def caught_up(self) -> None:
        await until(lambda: self.offsets_done(self.appended))

    async def published(self) -> None:
        """Until the relay has published every membership message written so far."""

        async def empty() -> bool:
            conn = await asyncpg.connect(self.db)
            try:
                return not await conn.fetchval("SELECT EXISTS (SELECT FROM segment_outbox)")
            finally:
                await conn.close()

        await until(empty)

    async def offsets_done(self, expected: int) -> bool:
        conn = await asyncpg.connect(self.db)
        try:
            done = await conn.fetchval(
                """SELECT coalesce(sum(next_offset), 0) FROM projection_offsets
                   WHERE projection = 'contacts'"""
            )
        finally:
            await conn.close()
        return bool(done >= expected)

    async def kafka_ingest(self, out: AIOKafkaProducer, events: Iterable[Keyed]) -> float:
        """Events/s from the first append until the processor's offsets reach the end."""
        started = time.monotonic()
        count = 0
        for key, value in events:
            await out.send(self.topics.contact_events.name, value, key=key)
            count += 1
        await out.flush()
        self.appended += count
        await self.caught_up()
        return count / (time.monotonic() - started)

    async def http_ingest(self, client: httpx.AsyncClient, count: int) -> float:
        batches = [
            {
                "events": [
                    json.loads(contact_event(f"h{b}-{i}", f"h{b:05d}{i:03d}", score=i % 100))
                    for i in range(1000)
                ]
            }
            for b in range(max(1, count // 1000))
        ]
        started = time.monotonic()
        queue = list(batches)

        async def worker() -> None:
            while queue:
                answer = await client.post("/v1/contact-events", json=queue.pop())
                answer.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(4)))
        self.appended += len(batches) * 1000
        return len(batches) * 1000 / (time.monotonic() - started)

    async def messages(self, consumer: AIOKafkaConsumer, into: dict[str, float]) -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    message = json.loads(r.value)
                    into[f"{message['cause']}/{message['contact_id']}"] = time.monotonic()

    async def event_to_message(
        self, out: AIOKafkaProducer, rate: int, seconds: float, heard: dict[str, float]
    ) -> list[float]:
        """Contact j (of FLIPPED) is first put just below its own boundary `b` of the score
        segments (score b - 1); then each event moves it across: b, b - 1, b, ... so each
        event enters or leaves exactly one segment, one message."""
        contacts = [f"l{j:05d}" for j in range(FLIPPED)]
        below = [5 * (1 + j % 19) - 1 for j in range(FLIPPED)]
        for j, contact in enumerate(contacts):
            value = contact_event(f"lset{j}", contact, score=below[j])
            await out.send(self.topics.contact_events.name, value, key=contact.encode())
        await out.flush()
        self.appended += FLIPPED
        await self.caught_up()
        await self.published()
        acked: dict[str, float] = {}
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            due = started + n / rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            event_id, j = f"l{n}", n % FLIPPED
            score = below[j] + (1 if (n // FLIPPED) % 2 == 0 else 0)
            value = contact_event(event_id, contacts[j], score=score)
            sent = await out.send(self.topics.contact_events.name, value, key=contacts[j].encode())
            key = f"{event_id}/{contacts[j]}"
            sent.add_done_callback(lambda _f, k=key: acked.__setitem__(k, time.monotonic()))
            n += 1
        await out.flush()
        self.appended += n
        await self.caught_up()
        await self.published()
        await asyncio.sleep(1)  # the last published messages reach the listener
        return [(heard[e] - t) * 1000 for e, t in acked.items() if e in heard]

    async def timers(
        self, out: AIOKafkaProducer, seconds: float, heard: dict[str, float]
    ) -> list[float]:
        base = int(time.time()) + 5
        dues = {}
        for n in range(200):
            ends = base + int(n * seconds / 200) + 10  # enters at ends - 10
            dues[f"timer:{ends - 10}/t{n:05d}"] = ends - 10
            await out.send(
                self.topics.contact_events.name,
                contact_event(f"t{n}", f"t{n:05d}", ends=iso(ends)),
                key=f"t{n:05d}".encode(),
            )
        await out.flush()
        self.appended += 200
        await asyncio.sleep(max(dues.values()) - time.time() + 3)
        lateness = []
        for cause, due in dues.items():
            if cause in heard:  # wall-clock instant of hearing vs the due second
                lateness.append((time.time() - (time.monotonic() - heard[cause])) - due)
        return [s * 1000 for s in lateness]


def segments(segment_count: int, seed: str, profiles: int) -> Prepare:
    """The live segments the phases need, put in the database before the service starts, and
    with `--seed copy` the profiles too."""

    async def prepare(conn: Connection) -> None:
        for k in range(segment_count):
            await conn.execute(
                "INSERT INTO segments (id, name, kind, condition) VALUES ($1, $1, 'live', $2)",
                f"score{k}",
                json.dumps({">=": [{"var": "traits.score"}, k * 5]}),
            )
        await conn.execute(
            "INSERT INTO segments (id, name, kind, condition) VALUES ('soon', 'soon', 'live', $1)",
            json.dumps({"within_next": ["traits.ends", 10]}),
        )
        if seed == "copy":
            seconds = await contacts_at_scale.seed(conn, profiles)
            print(f"seeded {profiles:,} profiles with COPY in {seconds:.1f} s", flush=True)

    return prepare


async def run(args: argparse.Namespace, served: Served) -> None:
    kafka = served.kafka
    bench = Bench(kafka, served.database_url, served.prefix)
    client = httpx.AsyncClient(
        base_url=served.base_url,
        timeout=120,
        headers={"Authorization": f"Bearer {served.key}"},
    )
    out = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
    consumer = AIOKafkaConsumer(
        bench.topics.segment_membership.name, bootstrap_servers=kafka, auto_offset_reset="latest"
    )
    heard: dict[str, float] = {}
    try:
        if args.seed == "copy":
            await contacts_at_scale.run(args, served.database_url, client, served.process.pid)
            return
        await out.start()
        rate = await bench.kafka_ingest(out, first_sight(args.profiles, time.time()))
        print(
            f"kafka ingest, first sight: {args.profiles:,} events at {rate:,.0f}/s"
            f" ({args.segments + 1} live segments)",
            flush=True,
        )
        if args.steady:
            await bench.published()  # the first sight's messages are not this phase's work
            events = Steady(args.profiles).events(args.steady, time.time())
            rate = await bench.kafka_ingest(out, events)
            print(
                f"kafka ingest, steady state: {args.steady:,} events on those contacts"
                f" at {rate:,.0f}/s",
                flush=True,
            )
        if "http" in args.phases:
            runs = range(args.runs)
            rates = [await bench.http_ingest(client, args.profiles // 2) for _ in runs]
            print(
                f"http ingest: {statistics.median(rates):,.0f} events/s (median of {args.runs})",
                flush=True,
            )
        await bench.caught_up()  # no backlog before the latencies
        await bench.published()
        await consumer.start()
        await asyncio.sleep(2)
        listening = asyncio.create_task(bench.messages(consumer, heard))
        if "latency" in args.phases:
            lat = await bench.event_to_message(out, args.rate, args.seconds, heard)
            print(
                f"event -> message at {args.rate}/s: p50 {pct(lat, 0.5):.0f} ms,"
                f" p99 {pct(lat, 0.99):.0f} ms ({len(lat):,} messages)",
                flush=True,
            )
        if "timers" in args.phases:
            late = await bench.timers(out, args.seconds, heard)
            print(
                f"timer lateness: p50 {pct(late, 0.5):.0f} ms,"
                f" p99 {pct(late, 0.99):.0f} ms ({len(late)} timers)",
                flush=True,
            )
        listening.cancel()
        if "backfill" not in args.phases:
            return
        started = time.monotonic()
        created = await client.post(
            "/v1/segments",
            json={"id": "new", "name": "new", "condition": {"==": [{"var": "traits.plan"}, "pro"]}},
        )
        created.raise_for_status()

        async def finished() -> bool:
            return bool((await client.get("/v1/segments/new")).json()["backfill"]["finished"])

        await until(finished)
        print(
            f"backfill over {args.profiles * 3 // 2:,} profiles:"
            f" {time.monotonic() - started:.1f} s",
            flush=True,
        )
        if "preview" not in args.phases:
            return
        started = time.monotonic()
        (
            await client.post(
                "/v1/segments/preview", json={"condition": {">": [{"var": "traits.score"}, 50]}}
            )
        ).raise_for_status()
        print(f"preview: {time.monotonic() - started:.1f} s", flush=True)
        rss = resident_kib(served.pid)
        print(f"service memory: {rss // 1024} MiB resident", flush=True)
    finally:
        await consumer.stop()
        await out.stop()
        await client.aclose()


def resident_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument(
        "--steady", type=int, default=200_000, help="steady-state events on the N contacts"
    )
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument(
        "--consumers", type=int, default=2, help="COUPONS_CONTACT_CONSUMERS of the service"
    )
    parser.add_argument("--workers", type=int, default=1, help="COUPONS_WORKERS of the service")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", choices=("kafka", "copy"), default="kafka")
    parser.add_argument(
        "--phases",
        type=lambda text: set(text.split(",")),
        default={"kafka", "http", "latency", "timers", "backfill", "preview"},
        help="which phases to run (Kafka ingest always runs: it seeds the profiles)",
    )
    args = parser.parse_args()
    with serving(
        "contacts-bench",
        kafka_port=int(os.environ.get("COUPONS_KAFKA_PORT", "30392")),
        pg_port=int(os.environ.get("COUPONS_PG_PORT", "30732")),
        env={
            "COUPONS_PARTITIONS": str(PARTITIONS),
            "COUPONS_COMPONENTS": "contacts",
            "COUPONS_CONTACT_CONSUMERS": str(args.consumers),
            "COUPONS_WORKERS": str(args.workers),
        },
        prepare=segments(args.segments, args.seed, args.profiles),
    ) as served:
        asyncio.run(run(args, served))


if __name__ == "__main__":
    main()

"""`bench/contacts.py --seed copy`: backfill, preview and memory over N profiles seeded straight
into PostgreSQL with COPY (seeding 1,000,000 through Kafka takes longer than the processor's
rate allows in a bench run; see docs/performance/contacts.md). The rows are the processor's own
(`store.to_json` of the profile one `contact.updated` event folds to): traits `plan` (free /
pro), `score` (0-99), `ends` (ISO-8601, spread over the next 10 days), one event fact.

Then a `coupons serve` (contacts component) on them, and for --runs each:
* backfill: a new live segment (`plan == pro`: half the profiles enter) until finished;
* preview: `score > 50`, and `ends` within the next 3 days (time-relative);
* memory: the service's resident set at the end.
"""

import asyncio
import statistics
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx

from services.coupons.contacts import store
from services.coupons.contacts.conditions import fact_key
from services.coupons.contacts.profile import Fact, Profile, Trait

CHUNK = 100_000
UPDATED = fact_key("contact.updated")


def profiles(count: int, now: int) -> Iterator[tuple[str, str]]:
    for n in range(count):
        cid = f"c{n:08d}"
        ends = now + (n * 7919) % (10 * 86400)
        traits = {
            "plan": Trait(("free", "pro")[n % 2], now, f"s{n}"),
            "score": Trait(n % 100, now, f"s{n}"),
            "ends": Trait(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends)), now, f"s{n}"),
        }
        facts = {UPDATED: Fact("contact.updated", 1, now)}
        profile = Profile(cid, None, 0, traits, now, now, facts)
        yield cid, store.to_json(profile)


async def seed(conn: asyncpg.Connection, count: int) -> float:
    """COPY `count` profiles; seconds taken."""
    started = time.monotonic()
    rows = profiles(count, int(time.time()))
    while chunk := [next(rows) for _ in range(min(CHUNK, count))]:
        await conn.copy_records_to_table(
            "contact_profiles", records=chunk, columns=["contact_id", "profile"]
        )
        count -= len(chunk)
    await conn.execute("VACUUM ANALYZE contact_profiles")
    return time.monotonic() - started


async def measure(client: httpx.AsyncClient, count: int, runs: int) -> None:
    backfills = []
    for run in range(runs):
        started = time.monotonic()
        created = await client.post(
            "/v1/segments",
            json={
                "id": f"pro{run}",
                "name": f"pro {run}",
                "condition": {"==": [{"var": "traits.plan"}, "pro"]},
            },
        )
        created.raise_for_status()
        while True:
            state = (await client.get(f"/v1/segments/pro{run}")).json()
            if state["backfill"]["finished"]:
                break
            await asyncio.sleep(0.5)
        backfills.append(time.monotonic() - started)
        print(
            f"backfill {run + 1}: {count:,} profiles in {backfills[-1]:.1f} s,"
            f" {state['size']:,} members",
            flush=True,
        )
    print(f"backfill: median {statistics.median(backfills):.1f} s of {backfills}", flush=True)
    for name, condition in (
        ("score > 50", {">": [{"var": "traits.score"}, 50]}),
        ("ends within 3 days", {"within_next": ["traits.ends", 3 * 86400]}),
    ):
        took, answer = [], {}
        for _ in range(runs):
            started = time.monotonic()
            found = await client.post("/v1/segments/preview", json={"condition": condition})
            found.raise_for_status()
            took.append(time.monotonic() - started)
            answer = found.json()
        print(
            f"preview {name}: median {statistics.median(took):.2f} s of"
            f" {[round(t, 2) for t in took]}, matched {answer['matched']:,}",
            flush=True,
        )


async def run(args: Any, db: str, client: httpx.AsyncClient, pid: int) -> None:
    from contacts import resident_kib

    print(f"rss before: {resident_kib(pid) // 1024} MiB", flush=True)
    await measure(client, args.profiles, args.runs)
    print(f"service memory: {resident_kib(pid) // 1024} MiB resident", flush=True)
    conn = await asyncpg.connect(db)
    try:
        timers = await conn.fetchval("SELECT count(*) FROM contact_timers")
    finally:
        await conn.close()
    print(f"durable timers: {timers:,}", flush=True)

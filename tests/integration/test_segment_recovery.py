"""Contacts recover from crashes: a timer owned by a process killed with SIGKILL fires from the
next one, on time and once; a backfill that crashed mid-page resumes after its last committed
page, and every member gets exactly one entered message."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from contracts.contacts import ContactEvent, MembershipChanged
from services.coupons.contacts import backfill, processor, store
from services.coupons.contacts.dedupe_window import DedupeWindow
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate
from tests.integration.conftest import create_key, free_port
from tests.integration.test_segments import event, iso, membership_messages, wait_for

pytestmark = pytest.mark.integration


def serve(settings: Settings, log: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "COUPONS_TOPIC_PREFIX": settings.topic_prefix,
        "COUPONS_PARTITIONS": str(settings.partitions),
        "COUPONS_COMPONENTS": "contacts",
        "COUPONS_PORT": str(port),
    }
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.coupons.cli", "serve"], env=env, stdout=out, stderr=out
        )


def ready(client: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    def up() -> bool:
        assert process.poll() is None
        try:
            return client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, timeout=60)


def test_a_timer_fires_after_a_sigkill_of_the_process_that_owned_it(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    first = serve(settings, tmp_path / "service.log", port)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        ready(client, first)
        client.headers["Authorization"] = f"Bearer {create_key(settings.database_url, 'admin')}"
        client.post(
            "/v1/segments",
            json={"id": "soon", "name": "Soon", "condition": {"within_next": ["traits.ends", 5]}},
        ).raise_for_status()
        # the segment's backfill over existing profiles done first: else, on a slow machine,
        # it could reach the contact after the moment and enter it itself, not the timer
        wait_for(lambda: (client.get("/v1/segments/soon").json()["backfill"] or {}).get("finished"))
        ends = int(time.time()) + 12  # enters at ends - 5
        client.post(
            "/v1/contact-events",
            json={"events": [event("k1", "kim", time.time(), ends=iso(ends))]},
        ).raise_for_status()

        async def timer_due() -> Any:
            conn = await asyncpg.connect(settings.database_url)
            try:
                return await conn.fetchval("SELECT due_at FROM contact_timers")
            finally:
                await conn.close()

        assert wait_for(lambda: asyncio.run(timer_due())) == ends - 5
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = serve(settings, tmp_path / "service.log", port)
        try:
            ready(client, second)
            messages = asyncio.run(membership_messages(settings, 1, within_s=40))
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        client.close()
    assert [(m["type"], m["cause"]) for m in messages] == [
        ("contact.entered_segment.v1", f"timer:{ends - 5}")
    ]


class Crash(RuntimeError):
    pass


async def test_a_backfill_that_crashed_mid_page_resumes_and_enters_each_member_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = await asyncpg.create_pool(settings.database_url)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            now = time.time()
            events = [
                ContactEvent.model_validate(event(f"b{i}", f"c{i:04d}", now, score=i % 10))
                for i in range(2500)
            ]
            async with conn.transaction():
                await processor.apply(conn, events)
            async with conn.transaction():
                condition = {">=": [{"var": "traits.score"}, 7]}
                await conn.execute(
                    """INSERT INTO segments (id, name, kind, condition)
                       VALUES ('hi', 'Hi', 'live', $1)""",
                    json.dumps(condition),
                )
                await backfill.start(conn, "hi", 1)
        monkeypatch.setattr(backfill, "PAGE", 1000)
        runner = backfill.BackfillRunner(pool)
        assert await runner.step()  # page 1 committed
        write_page = backfill.write_page

        async def crash(*args: Any, **kwargs: Any) -> None:
            await write_page(*args, **kwargs)
            raise Crash

        monkeypatch.setattr(backfill, "write_page", crash)
        with pytest.raises(Crash):
            await runner.step()  # page 2 rolled back
        monkeypatch.setattr(backfill, "write_page", write_page)
        restarted = backfill.BackfillRunner(pool)
        while await restarted.step():
            pass
        async with pool.acquire() as conn:
            job = await conn.fetchrow("SELECT done, total, finished FROM segment_backfills")
            members = await conn.fetchval("SELECT count(*) FROM segment_members")
            entered = [
                json.loads(r["message"])
                for r in await conn.fetch("SELECT message::text FROM segment_outbox")
            ]
    finally:
        await pool.close()
    assert dict(job) == {"done": 2500, "total": 2500, "finished": True}
    assert members == 750
    assert len(entered) == 750 and len({m["contact_id"] for m in entered}) == 750
    for message in entered:  # built in SQL: the same message the processor's path writes
        MembershipChanged.model_validate(message)
        at = datetime.fromisoformat(message["at"])
        expected = store._message("entered", message["contact_id"], "hi", 1, "backfill:hi:1", at)
        assert message == expected


async def test_a_segment_changed_while_events_flow_ends_with_exactly_its_new_members(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events applied by one writer while the segment is changed and backfilled by another:
    in the end the members are exactly the contacts the new version matches, and each
    member's last message is an entry, each non-member's (if any) an exit."""
    monkeypatch.setattr(backfill, "PAGE", 100)
    pool = await asyncpg.create_pool(settings.database_url)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            async with conn.transaction():
                await conn.execute(
                    """INSERT INTO segments (id, name, kind, condition)
                       VALUES ('s', 'S', 'live', $1)""",
                    json.dumps({">=": [{"var": "traits.score"}, 5]}),
                )
                await backfill.start(conn, "s", 1)

        async def events() -> None:
            for batch in range(20):
                found = [
                    ContactEvent.model_validate(
                        event(f"f{batch}-{i}", f"c{i:03d}", time.time(), score=(i * batch) % 10)
                    )
                    for i in range(100)
                ]
                async with pool.acquire() as conn, conn.transaction():
                    await processor.apply(conn, found)
                await asyncio.sleep(0)

        async def change() -> None:
            runner = backfill.BackfillRunner(pool)
            for _ in range(3):
                await runner.step()
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """UPDATE segments SET condition = $1, version = 2 WHERE id = 's'""",
                    json.dumps({">=": [{"var": "traits.score"}, 8]}),
                )
                await backfill.start(conn, "s", 2)
            stepped = True
            while stepped:  # a page at a time, while events keep coming
                stepped = await runner.step()

        await asyncio.gather(events(), change())
        async with pool.acquire() as conn:
            scores = {
                r["contact_id"]: json.loads(r["profile"])["traits"]["score"]["value"]
                for r in await conn.fetch("SELECT contact_id, profile::text FROM contact_profiles")
            }
            members = {r["contact_id"] for r in await conn.fetch("SELECT * FROM segment_members")}
            last = {
                r["c"]: r["t"]
                for r in await conn.fetch(
                    """SELECT DISTINCT ON (contact_id) contact_id AS c, message->>'type' AS t
                       FROM segment_outbox ORDER BY contact_id, seq DESC"""
                )
            }
    finally:
        await pool.close()
    expected = {c for c, score in scores.items() if score >= 8}
    assert len(scores) == 100 and members == expected
    assert all(last[c] == "contact.entered_segment.v1" for c in members)
    assert all(t == "contact.left_segment.v1" for c, t in last.items() if c not in members)


async def test_the_dedupe_window_forgets_only_ids_past_it(settings: Settings) -> None:
    pool = await asyncpg.create_pool(settings.database_url)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            await conn.execute(
                """INSERT INTO contact_event_ids (event_id, applied_at) VALUES
                   ('old', now() - interval '31 days'), ('new', now() - interval '29 days')"""
            )
        assert await DedupeWindow(pool, 30).prune() == 1
        async with pool.acquire() as conn:
            kept = await conn.fetch("SELECT event_id FROM contact_event_ids")
    finally:
        await pool.close()
    assert [r["event_id"] for r in kept] == ["new"]

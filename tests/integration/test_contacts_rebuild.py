"""`coupons contacts rebuild`: profiles and memberships replayed from the contact events and
our event log give the rows the live processor wrote, even over damaged rows, while the
service keeps running."""

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.coupons.rebuilds import rebuild_contacts_from
from services.coupons.settings import Settings
from tests.integration.helpers import campaign, checkout
from tests.integration.test_segments import event, wait_for

pytestmark = pytest.mark.integration
DAY = 86400


async def rows(settings: Settings) -> dict[str, list[Any]]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return {
            "profiles": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT contact_id, email, profile FROM contact_profiles ORDER BY contact_id"
                )
            ],
            "members": [
                tuple(r)
                for r in await conn.fetch(
                    """SELECT segment_id, contact_id, version FROM segment_members
                       ORDER BY segment_id, contact_id"""
                )
            ],
            "timers": [
                tuple(r) for r in await conn.fetch("SELECT * FROM contact_timers ORDER BY 1")
            ],
        }
    finally:
        await conn.close()


async def damage(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("UPDATE contact_profiles SET profile = '{}' WHERE contact_id = 'ann'")
        await conn.execute("DELETE FROM segment_members WHERE contact_id = 'bob'")
        await conn.execute("DELETE FROM contact_timers")
    finally:
        await conn.close()


def test_a_rebuild_gives_the_rows_of_the_live_processor(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    client, _ = service
    segments = {
        "pro": {"==": [{"var": "traits.plan"}, "pro"]},
        "keen": {"did_event": {"type": "page.viewed", "at_least": 2, "in_last_days": 7}},
        "ending": {"within_next": ["traits.trial_ends_at", 30 * DAY]},
        "redeemers": {"less_than_ago": ["coupons.last_redeemed_at", 90 * DAY]},
    }
    for sid, condition in segments.items():
        client.post("/v1/segments", json={"id": sid, "name": sid, "condition": condition})
    now = time.time()
    ends = now + 40 * DAY  # enters "ending" in 10 days: a timer
    batch = [
        event("a1", "ann", now - 50, plan="pro", trial_ends_at=ends),
        event("a2", "ann", now - 2 * DAY, "page.viewed"),
        event("a3", "ann", now - DAY, "page.viewed"),
        event("b1", "bob", now - 10, plan="free"),
        event("b2", "bob", now - 20, plan="pro"),  # older: bob stays free
        event("c1", "cat", now - 5, "page.viewed"),
    ]
    batch[0]["traits"]["trial_ends_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends))
    client.post("/v1/contact-events", json={"events": batch}).raise_for_status()
    campaign(client, "BACK5")
    redeemed = client.post(
        "/v1/redemptions", json=checkout("BACK5", "bob"), headers={"Idempotency-Key": "r-bob"}
    )
    assert redeemed.status_code == 201, redeemed.text
    wait_for(
        lambda: (
            (p := client.get("/v1/contacts/bob")).status_code == 200
            and p.json()["coupons"]["redeemed"] == 1
        )
    )
    wait_for(lambda: len(client.get("/v1/contacts/ann").json().get("segments", [])) == 2)
    wait_for(lambda: client.get("/v1/contacts/cat").status_code == 200)
    for sid in segments:  # a backfill running after the damage would repair part of it
        wait_for(lambda sid=sid: client.get(f"/v1/segments/{sid}").json()["backfill"]["finished"])
    live = asyncio.run(rows(settings))
    assert {(s, c) for s, c, _ in live["members"]} == {
        ("pro", "ann"),
        ("keen", "ann"),
        ("redeemers", "bob"),
    }
    assert [c for c, _ in live["timers"]] == ["ann", "bob"]  # cat: nothing changes by time

    asyncio.run(damage(settings))
    rebuilt = asyncio.run(rebuild_contacts_from(settings, show_progress=False))
    assert asyncio.run(rows(settings)) == live
    assert (rebuilt.contact_events, rebuilt.coupon_events, rebuilt.profiles) == (6, 1, 3)
    assert rebuilt.messages == 1  # bob enters "redeemers" again

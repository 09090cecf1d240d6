"""Unique codes over HTTP: a bulk job, export, distribution to contacts, and redemption only
by the contact a code was given to."""

import asyncio
import csv
import io
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.coupons.settings import Settings

pytestmark = pytest.mark.integration

COUNT = 25_000  # two chunks of the job


def test_generate_export_distribute_and_redeem_unique_codes(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    client, _ = service
    created = client.post(
        "/v1/campaigns",
        json={
            "name": "Product Hunt launch",
            "discount": {"kind": "percent", "percent_off": "30"},
            "limits": {"per_contact": None},
        },
    ).json()
    weak = client.post(
        f"/v1/campaigns/{created['id']}/code-batches",
        json={"count": 10, "pattern": {"length": 6}},
    )
    assert weak.status_code == 422 and weak.json()["error"]["code"] == "code_entropy_too_low"

    started = client.post(
        f"/v1/campaigns/{created['id']}/code-batches",
        json={"count": COUNT, "pattern": {"prefix": "PH", "length": 12}},
        headers={"Idempotency-Key": "ph-launch"},
    )
    assert started.status_code == 202, started.text
    batch_url = started.headers["location"]
    deadline = time.monotonic() + 120
    while (batch := client.get(batch_url).json())["status"] == "running":
        assert time.monotonic() < deadline, batch
        time.sleep(0.5)
    assert batch["status"] == "done" and batch["generated"] == COUNT

    exported = client.get(f"/v1/campaigns/{created['id']}/codes.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    codes = [r["code"] for r in rows]
    assert len(codes) == len(set(codes)) == COUNT
    assert all(c.startswith("PH") and len(c) == 14 and c.isalnum() for c in codes)
    page = client.get(f"/v1/campaigns/{created['id']}/codes", params={"limit": 10}).json()
    assert [c["code"] for c in page["data"]] == sorted(codes)[:10]
    audit = client.get(f"/v1/campaigns/{created['id']}/audit").json()
    added = [e["detail"] for e in audit if e["type"] == "coupon.codes_added.v1"]
    assert sum(d["codes"] for d in added) == COUNT, "the audit counts codes, not lists them"

    given = client.post(
        f"/v1/campaigns/{created['id']}/distributions",
        json={"contacts": [{"contact_id": "ada"}, {"contact_id": "bob"}], "channel": "email"},
    ).json()["distributed"]
    holders = {d["contact_id"]: d["code"] for d in given}
    assert len(set(holders.values())) == 2 and set(holders.values()) <= set(codes)

    def redeem(contact: str, code: str, key: str) -> httpx.Response:
        body = {
            "code": code,
            "customer": {"contact_id": contact},
            "cart": {"currency": "USD", "amount": 10_000},
            "order_ref": key,
        }
        return client.post("/v1/redemptions", json=body, headers={"Idempotency-Key": key})

    leaked = redeem("mallory", holders["ada"], "leak")
    assert (
        leaked.status_code == 403 and leaked.json()["error"]["code"] == "bound_to_another_contact"
    )
    mine = redeem("ada", holders["ada"].lower(), "ada-1")
    assert mine.status_code == 201 and mine.json()["discount"] == 3000
    again = redeem("ada", holders["ada"], "ada-2")
    assert again.status_code == 409 and again.json()["error"]["code"] == "code_exhausted"
    assert client.get(batch_url).json()["generated"] == COUNT

    # every code has its row for analysts, the unused ones with zeros (not stored per code)
    deadline = time.monotonic() + 30
    while (usage := asyncio.run(code_usage(settings, created["id"])))[holders["ada"]] != (1, 1):
        assert time.monotonic() < deadline, usage[holders["ada"]]
        time.sleep(0.5)
    assert len(usage) == COUNT and usage[holders["bob"]] == (1, 0)
    assert sum(d + r for d, r in usage.values()) == 3


async def code_usage(settings: Settings, campaign_id: str) -> dict[str, tuple[int, int]]:
    """`analytics.code_usage` of a campaign: code -> (distributed, redeemed)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT code, distributed, redeemed FROM analytics.code_usage WHERE campaign_id = $1",
            campaign_id,
        )
    finally:
        await conn.close()
    return {r["code"]: (r["distributed"], r["redeemed"]) for r in rows}

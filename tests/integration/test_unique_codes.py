"""Unique codes over HTTP: a bulk job, export, distribution to contacts, and redemption only
by the contact a code was given to."""

import csv
import io
import time
from pathlib import Path

import httpx

COUNT = 25_000  # two chunks of the job


def test_generate_export_distribute_and_redeem_unique_codes(
    service: tuple[httpx.Client, Path],
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

"""The analysts' read models over HTTP against the real service: usage, the contact graph,
attribution by channel and source, and the ledger as CSV, after a mixed workload."""

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.settings import Settings
from services.devstack.workload import UNREADABLE
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

Service = tuple[httpx.Client, Path]


def redeem(client: httpx.Client, contact: str, order: str, amount: int = 2000) -> httpx.Response:
    body = {
        "code": "SPRING",
        "customer": {"contact_id": contact, "email": f"{contact}@example.com"},
        "cart": {"currency": "EUR", "amount": amount},
        "order_ref": order,
    }
    return client.post("/v1/redemptions", json=body, headers={"Idempotency-Key": order})


def test_usage_contacts_attribution_and_ledger_after_a_mixed_workload(service: Service) -> None:
    client, _ = service
    created = client.post(
        "/v1/campaigns",
        json={
            "name": "Spring",
            "code": "SPRING",
            "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
            "limits": {"max_redemptions": 10, "budget": 3000, "per_contact": 1},
        },
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    sent = client.post(
        f"/v1/campaigns/{cid}/distributions",
        json={
            "contacts": [{"contact_id": "ann"}, {"contact_id": "bob"}],
            "channel": "sequence",
            "source_ref": "trial-day-11",
        },
    )
    assert sent.status_code == 200, sent.text
    assert redeem(client, "ann", "inv-1", 3000).status_code == 201
    direct = redeem(client, "cat", "inv-2")
    assert direct.status_code == 201
    reversal = client.post(f"/v1/redemptions/{direct.json()['redemption_id']}/reversal", json={})
    assert reversal.status_code == 200
    refused = redeem(client, "ann", "inv-3")
    assert refused.json()["error"]["code"] == "per_contact_limit"

    usage = eventually(
        lambda: client.get(f"/v1/campaigns/{cid}/usage").json(),
        lambda u: u.get("refusals"),
    )
    assert {k: usage[k] for k in ("issued", "distributed", "redeemed", "reversed")} == {
        "issued": 1,
        "distributed": 2,
        "redeemed": 2,
        "reversed": 1,
    }
    assert usage["remaining"] == 9
    assert (usage["budget_spent"], usage["budget_left"]) == (500, 2500)
    assert usage["refusals"] == [
        {"command_type": "coupon.redeem_code.v1", "reason": "per_contact_limit", "refused": 1}
    ]

    ann = eventually(
        lambda: client.get("/v1/contacts/ann/coupons").json()["data"], lambda d: len(d) == 2
    )
    assert [(r["activity"], r["channel"], r["source_ref"]) for r in ann] == [
        ("distributed", "sequence", "trial-day-11"),
        ("redeemed", "sequence", "trial-day-11"),
    ]
    assert (ann[1]["amount"], ann[1]["discount"], ann[1]["total"]) == (3000, 500, 2500)
    cat = eventually(
        lambda: client.get("/v1/contacts/cat/coupons").json()["data"], lambda d: len(d) == 2
    )
    assert [(r["activity"], r["channel"]) for r in cat] == [("redeemed", None), ("reversed", None)]

    today = datetime.now(UTC).date().isoformat()
    stats = eventually(
        lambda: client.get(
            f"/v1/campaigns/{cid}/stats",
            params={"from": today, "to": today, "group_by": ["channel", "source"]},
        ).json(),
        lambda s: sum(r["redeemed"] for r in s.get("data", [])) == 2,
    )
    assert stats["data"] == [
        {
            "day": None,
            "channel": "direct",
            "source_ref": None,
            "distributed": 0,
            "redeemed": 1,
            "unique_contacts": 1,
            "conversion_rate": None,
            "gross_revenue": 0,
            "discount_given": 0,
            "net_revenue": 0,
            "refunded": 0,
            "reversals": 1,
        },
        {
            "day": None,
            "channel": "sequence",
            "source_ref": "trial-day-11",
            "distributed": 2,
            "redeemed": 1,
            "unique_contacts": 1,
            "conversion_rate": 0.5,
            "gross_revenue": 3000,
            "discount_given": 500,
            "net_revenue": 2500,
            "refunded": 0,
            "reversals": 0,
        },
    ]
    total = client.get(f"/v1/campaigns/{cid}/stats", params={"group_by": "day"}).json()["data"]
    assert [(r["day"], r["redeemed"], r["distributed"]) for r in total] == [(today, 2, 2)]
    bad = client.get(
        f"/v1/campaigns/{cid}/stats", params={"from": "2026-02-02", "to": "2026-01-01"}
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "query.from"
    assert client.get("/v1/campaigns/nope/stats").json()["error"]["code"] == "campaign_not_found"

    exported = client.get(f"/v1/campaigns/{cid}/stats.csv", params={"group_by": "channel"})
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["channel"], r["net_revenue"]) for r in table] == [
        ("direct", "0"),
        ("sequence", "2500"),
    ]

    ledger = client.get("/v1/ledger.csv", params={"campaign_id": cid, "from": today, "to": today})
    rows = list(csv.DictReader(io.StringIO(ledger.text)))
    assert [(r["order_ref"], r["channel"], r["net_revenue"]) for r in rows] == [
        ("inv-1", "sequence", "2500"),
        ("inv-2", "direct", "0"),
    ]
    assert rows[1]["reversed_at"] and rows[0]["source"] == "checkout"


async def test_lag_and_dead_letters_show_in_metrics_and_status(
    service: Service, settings: Settings
) -> None:
    client, _ = service
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        topic = declare(settings.topic_prefix, settings.partitions).events.name
        await producer.send_and_wait(topic, UNREADABLE, key=b"junk")
    finally:
        await producer.stop()
    metrics = eventually(
        lambda: client.get("/metrics").text,
        lambda text: (
            text.count("coupons_projection_dead_letters_total{") == 4
            and not re.search(r"lag_events{.*} [1-9]", text)
        ),
    )
    for name in ("campaigns", "usage", "contacts", "ledger"):
        assert f'coupons_projection_lag_events{{projection="{name}"}} 0' in metrics
        assert re.search(
            rf'coupons_projection_dead_letters_total{{projection="{name}",reason="\w+"}} 1', metrics
        )
    assert re.search(r"^coupons_event_loop_lag_seconds_count [1-9]", metrics, re.M), "watched"
    assert 'coupons_event_loop_lag_seconds_bucket{le="+Inf"}' in metrics
    status = client.get("/v1/projections").json()["data"]
    assert {p["name"]: p["lag"] for p in status} == dict.fromkeys(
        ("campaigns", "usage", "contacts", "ledger"), 0
    )
    ledger = next(p for p in status if p["name"] == "ledger")
    assert ledger["rebuildable"] and sum(ledger["dead_letters"].values()) == 1
    assert sum(p["end_offset"] for p in ledger["partitions"]) == 1
    assert client.get("/readyz").json()["checks"]["projection_lag"]["ledger"] == 0

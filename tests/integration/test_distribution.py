"""Distributing a code to contacts over HTTP announces each one on the public topic, once."""

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from contracts.topics import declare
from services.coupons.settings import Settings

pytestmark = pytest.mark.integration


async def issued_messages(settings: Settings, expect: int) -> list[tuple[bytes, dict]]:  # type: ignore[type-arg]
    topic = declare(settings.topic_prefix, settings.partitions).issued.name
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: list[tuple[bytes, dict]] = []  # type: ignore[type-arg]
    try:
        for _ in range(20):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen.extend((r.key, json.loads(r.value)) for r in records)
            if len(seen) >= expect:
                await asyncio.sleep(1)  # and no more arrive
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen.extend((r.key, json.loads(r.value)) for r in records)
                break
    finally:
        await consumer.stop()
    return seen


async def test_distribute_to_contacts_and_announce_each_once(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    client, _ = service
    created = client.post(
        "/v1/campaigns",
        json={
            "name": "Trial rescue",
            "code": "RESCUE20",
            "discount": {
                "kind": "percent",
                "percent_off": "20",
                "max_amount_off": 5000,
                "currency": "EUR",
            },
        },
    ).json()
    body = {
        "contacts": [{"contact_id": f"c{i}", "email": f"c{i}@example.com"} for i in range(3)],
        "channel": "sequence",
        "source_ref": "trial-ending-day-11",
    }
    url = f"/v1/campaigns/{created['id']}/distributions"
    first = client.post(url, json=body, headers={"Idempotency-Key": "trial-batch-1"})
    assert first.status_code == 200, first.text
    assert first.json()["refused"] == []
    assert sorted(d["contact_id"] for d in first.json()["distributed"]) == ["c0", "c1", "c2"]
    retry = client.post(url, json=body, headers={"Idempotency-Key": "trial-batch-1"})
    assert sorted(d["distribution_id"] for d in retry.json()["distributed"]) == sorted(
        d["distribution_id"] for d in first.json()["distributed"]
    )
    assert client.get(f"/v1/campaigns/{created['id']}").json()["usage"]["distributed"] == 3

    messages = await issued_messages(settings, 3)
    assert sorted(key for key, _ in messages) == [b"c0", b"c1", b"c2"]
    announced = messages[0][1]["data"]
    assert announced["type"] == "coupon.issued.v1"
    assert announced["code"] == "RESCUE20"
    assert announced["summary"] == "20% off (up to EUR 50.00), on one invoice"
    assert announced["channel"] == "sequence" and announced["source_ref"] == "trial-ending-day-11"
    assert announced["expires_at"] == created["validity"]["expires_at"].replace("+00:00", "Z")

    asyncapi = client.get("/asyncapi.json").json()
    assert any(name.endswith("coupons.issued.v1") for name in asyncapi["channels"])
    assert "coupon.issued.v1" in json.dumps(asyncapi["components"])

"""A message no consumer can process does not stop any of them: poison appended straight to the
event topic (past the API's bounds) and a Stripe event the translator fails on are parked,
counted and reported, and the projector, the campaign view, the Stripe translator and, after
a restart, the decider go on serving."""

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition

from contracts.envelope import Envelope
from contracts.events import CommandRejected, Event, RedemptionReversed
from contracts.reasons import Reason
from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.settings import Settings
from tests import stripe_payloads as sp
from tests.integration.conftest import RELAXED, ServiceFactory
from tests.integration.helpers import SECRET, campaign, checkout, deliver, eventually, handled

pytestmark = pytest.mark.integration


def redeem(client: httpx.Client, code: str, contact: str) -> httpx.Response:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    return client.post("/v1/redemptions", json=checkout(code, contact), headers=key)


async def append_events(settings: Settings, campaign_id: str, values: list[bytes]) -> None:
    """Append raw records to the campaign's event partition, as a buggy writer would."""
    topics = declare(settings.topic_prefix, settings.partitions)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        partition = kafka.partition_for(campaign_id, settings.partitions)
        for value in values:
            await producer.send_and_wait(
                topics.events.name, value, key=campaign_id.encode(), partition=partition
            )
    finally:
        await producer.stop()


async def dead_letters(settings: Settings) -> list[dict[str, str]]:
    """The headers of every record on the test's dead-letter topic."""
    topic = declare(settings.topic_prefix, settings.partitions).dead_letters
    reader = kafka.reader(settings.kafka_bootstrap_servers, committed_only=False)
    await reader.start()
    try:
        tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        found: list[dict[str, str]] = []
        for tp in tps:
            while await reader.position(tp) < ends[tp]:
                for record in (await reader.getmany(tp, timeout_ms=500)).get(tp, []):
                    found.append({k: v.decode() for k, v in record.headers})
        return found
    finally:
        await reader.stop()


def envelope(campaign_id: str, data: Event) -> bytes:
    return Envelope[Event](key=campaign_id, correlation_id="poison", data=data).to_bytes()


def ready(client: httpx.Client) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (answer := client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    return dict(answer.json()["checks"])


async def test_poison_on_the_topics_is_parked_and_every_consumer_goes_on(
    start_service: ServiceFactory, settings: Settings
) -> None:
    client, _ = start_service(STRIPE_WEBHOOK_SECRET=SECRET, **RELAXED)
    campaign_id = campaign(client, "POISON1", limits={"per_contact": None})["id"]
    assert redeem(client, "POISON1", "before").status_code == 201

    # past every bound the API enforces: a reversal of a redemption that never was (the
    # view's fold and the usage projection fail on it), an unreadable record, and a refusal
    # whose detail PostgreSQL cannot store
    never = RedemptionReversed(
        campaign_id=campaign_id, redemption_id="never", contact_id="x", discount=1
    )
    nul = CommandRejected(
        campaign_id=campaign_id, command_type="x", reason=Reason.EXHAUSTED, detail="a\x00b"
    )
    poison = [envelope(campaign_id, never), b"{not json", envelope(campaign_id, nul)]
    await append_events(settings, campaign_id, poison)

    # a paid invoice whose contact id no command can carry: the translator fails on it
    customer = sp.sid("cus")
    ours = sp.coupon(metadata={"growthos_campaign_id": campaign_id, "growthos_code": "POISON1"})
    found = sp.discount(customer, ours, promotion_code=sp.sid("promo"))
    bad = sp.invoice(customer, [(found["id"], 500)], 2000, metadata={"growthos_contact_id": "\x01"})
    good = sp.invoice(customer, [(found["id"], 500)], 3000, metadata={"growthos_contact_id": "ok"})
    known = sp.event("customer.discount.created", found)
    for document in (known, sp.event("invoice.paid", bad), sp.event("invoice.paid", good)):
        assert deliver(client, document).status_code == 200
    rows = await handled(settings, 3)
    outcomes = {r["type"]: r["outcome"] for r in rows if r["type"] != "invoice.paid"}
    paid = sorted(r["outcome"] for r in rows if r["type"] == "invoice.paid")
    assert paid == ["parked", "recorded"], (rows, outcomes)

    # everything is parked, with its reason, and counted; the service stays ready and serves
    expected = {"invalid_json", "projection_failed:usage", "translation_failed"}
    parked = await until(lambda: dead_letters(settings), lambda found: expected <= reasons(found))
    assert expected <= reasons(parked), parked
    checks = ready(client)
    assert checks["parked"]["campaign-view:unfoldable_event"] >= 1, checks
    assert any(k.startswith("projector:usage:") for k in checks["parked"]), checks
    assert checks["parked"]["stripe-translator:translation_failed"] == 1, checks
    assert redeem(client, "POISON1", "after").status_code == 201
    metrics = client.get("/metrics").text
    assert 'coupons_parked_total{consumer="campaign-view",reason="unfoldable_event"}' in metrics

    # a second replica joins: the partitions are reassigned and folded again from the log,
    # poison included; whichever decider holds the campaign skips the event and decides
    second, _ = start_service(**RELAXED)
    eventually(lambda: redeem(second, "POISON1", "later").status_code, lambda s: s == 201)
    decider_parked = [
        ready(c).get("parked", {}).get("decider:unfoldable_event", 0) for c in (client, second)
    ]
    assert sum(decider_parked) >= 1, decider_parked
    usage = second.get(f"/v1/campaigns/{campaign_id}").json()["usage"]
    assert usage["redemptions"] == 4, usage  # before, the good invoice, after, later


def reasons(headers: list[dict[str, str]]) -> set[str]:
    return {h["reason"] for h in headers}


async def until(read: Any, check: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await read()
        if check(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.3)

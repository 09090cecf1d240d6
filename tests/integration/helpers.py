"""What the integration tests share: making campaigns and checkouts over HTTP, waiting on
observable state, counting records on the test's topics, a stream of mixed events, and
deliveries to the Stripe bridge."""

import asyncio
import json
import os
import signal
import time
from itertools import islice
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import TopicPartition

from contracts.codec import EVENTS
from contracts.topics import Topics, declare
from services.coupons.bus import kafka, local_sockets
from services.coupons.settings import Settings
from services.devstack.workload import mixed_events, produce
from tests import stripe_payloads as sp

SECRET = "whsec_test_" + "x" * 24
"""The Stripe webhook secret of the `bridge` fixture's service."""


def eventually(read: Any, check: Any, timeout_s: float = 20) -> Any:
    """The projections apply asynchronously: poll until `check(read())` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if check(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def campaign(client: httpx.Client, code: str, **rules: Any) -> dict[str, Any]:
    body = {
        "name": f"Campaign {code}",
        "code": code,
        "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
    }
    created = client.post("/v1/campaigns", json={**body, **rules})
    assert created.status_code == 201, created.text
    return dict(created.json())


def checkout(code: str, contact: str, amount: int = 2000, **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "customer": {"contact_id": contact, "email": f"{contact}@example.com"},
        "cart": {"currency": "EUR", "amount": amount},
        "order_ref": f"order-{contact}",
        **extra,
    }


async def redeem_all(
    client: httpx.Client, bodies: list[tuple[str, dict[str, Any]]]
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=str(client.base_url), headers=client.headers, timeout=120, limits=limits
    ) as http:
        return await asyncio.gather(
            *(
                http.post("/v1/redemptions", json=body, headers={"Idempotency-Key": key})
                for key, body in bodies
            )
        )


def codes_of(responses: list[httpx.Response]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in responses:
        key = "accepted" if r.status_code == 201 else r.json()["error"]["code"]
        counts[key] = counts.get(key, 0) + 1
    return counts


async def listens(settings: Settings, topics: Topics, partitions: int) -> None:
    """Return once every partition's decider socket is bound (taking the name fails)."""
    for p in range(partitions):
        address = local_sockets.owner(settings.kafka_bootstrap_servers, topics.commands.name, p)
        probe = local_sockets.Inbox(address, lambda _: None)
        async with asyncio.timeout(60):
            while probe.open():
                probe.close()
                await asyncio.sleep(0.1)


async def records_on(settings: Settings, topic: str, partitions: int | None = None) -> int:
    """How many records were ever written to `topic` (one of the test's)."""
    reader = kafka.reader(settings.kafka_bootstrap_servers, committed_only=False)
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions or settings.partitions)]
        return sum((await reader.end_offsets(tps)).values())
    finally:
        await reader.stop()


async def replies_on_the_topic(settings: Settings) -> int:
    """How many replies were ever written to the test's replies topic."""
    return await records_on(settings, declare(settings.topic_prefix, 1).replies.name)


async def send(
    settings: Settings, count: int, seed: int, unreadable: int = 0, chunks: int = 1
) -> None:
    """`count` mixed events, in `chunks` 0.1 s apart (a stream the projector keeps up with)."""
    topics = declare(settings.topic_prefix, settings.partitions)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    events = mixed_events(count, seed=seed)
    try:
        for _ in range(chunks):
            await produce(producer, topics.events.name, islice(events, count // chunks + 1))
            await asyncio.sleep(0.1)
        await produce(producer, topics.events.name, events, unreadable)
    finally:
        await producer.stop()


def deliver(client: httpx.Client, document: dict[str, Any], **headers: str) -> httpx.Response:
    body = sp.body_of(document)
    signed = {"Stripe-Signature": sp.sign(body, SECRET), **headers}
    return client.post("/v1/webhooks/stripe", content=body, headers=signed)


def read(client: httpx.Client, path: str) -> httpx.Response:
    return client.get(path)


async def handled(settings: Settings, count: int, timeout_s: float = 30) -> list[asyncpg.Record]:
    """Wait until the translator has handled `count` distinct Stripe events."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await conn.fetch("SELECT * FROM stripe_events ORDER BY handled_at")
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def logged(settings: Settings) -> list[Any]:
    """Every event in the event log, in partition order, up to the high watermark: a command
    is answered once its transaction commits, but the commit markers that make its events
    readable (and move the committed end) may still be on their way."""
    topic = declare(settings.topic_prefix, settings.partitions).events.name
    tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
    watermarks = kafka.reader(settings.kafka_bootstrap_servers, committed_only=False)
    await watermarks.start()
    try:
        ends = await watermarks.end_offsets(tps)
    finally:
        await watermarks.stop()
    consumer = kafka.reader(settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        consumer.assign(tps)
        found = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(EVENTS.decode(r.value).data for r in records)
        return found
    finally:
        await consumer.stop()


def define(client: httpx.Client, code: str) -> str:
    reply = client.post(
        "/v1/campaigns",
        json={
            "name": f"Stripe {code}",
            "code": code,
            "discount": {"kind": "percent", "percent_off": "20"},
            "limits": {"max_redemptions": 1, "per_contact": 1},
        },
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def kill_serving(client: httpx.Client) -> None:
    """SIGKILL the `coupons serve` process behind `client` (found by its port)."""
    port = f"COUPONS_PORT={client.base_url.port}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            found = port in environ.read_bytes().split(b"\0")
            serving = b"services.coupons.cli" in (environ.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if found and serving:
            os.kill(int(environ.parent.name), signal.SIGKILL)
            return
    raise AssertionError(f"no service serves port {client.base_url.port}")


async def messages_on(
    settings: Settings, topic: str, expect: int, within_s: float = 30
) -> list[tuple[bytes, dict[str, Any]]]:
    """(key, JSON value) of the committed messages on `topic`, once `expect` arrived and a
    quiet second more (so one too many shows), or whatever came within `within_s`."""
    consumer = kafka.reader(settings.kafka_bootstrap_servers)
    consumer.subscribe([topic])
    await consumer.start()
    found: list[tuple[bytes, dict[str, Any]]] = []
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            records = [r for rs in batches.values() for r in rs]
            found.extend((r.key, json.loads(r.value)) for r in records)
            if len(found) >= expect and not records:
                break
    finally:
        await consumer.stop()
    return found

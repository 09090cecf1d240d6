"""A writer keeps its next transaction begun, its event partition added, between commands
(issue 21), and refreshes it before the broker's transaction timeout would abort it and fence
its producer: on the real broker, a writer left idle for several of its (here shortened)
transaction timeouts still decides and commits the next command."""

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from contracts.codec import EVENTS
from contracts.envelope import Envelope
from contracts.events import CampaignDefined, CodeRedeemed
from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.bus.gateway import CommandGateway
from services.coupons.bus.topics import ensure_topics
from services.coupons.decider import CampaignAggregate
from services.coupons.settings import Settings
from services.coupons.writer.clients import KafkaClients
from services.coupons.writer.engine import Writers
from tests.integration.helpers import listens
from tests.unit.campaign_commands import CAMPAIGN, define, redeem

pytestmark = pytest.mark.integration

TIMEOUT_MS = 3_000
"""The broker aborts a transaction open longer at its next check, every 10 s
(`transaction.abort.timed.out.transaction.cleanup.interval.ms`)."""


async def test_an_idle_writer_refreshes_its_begun_transaction_and_still_commits(
    settings: Settings,
) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    topics = declare(settings.topic_prefix, settings.partitions)
    layout = await ensure_topics(bootstrap, topics, 1)
    partitions = layout[topics.commands.name]
    clients = KafkaClients(bootstrap, transaction_timeout_ms=TIMEOUT_MS)
    writers = Writers(CampaignAggregate(topics), bootstrap, topics, partitions, clients=clients)
    running = asyncio.create_task(writers.run())
    gateway = CommandGateway(bootstrap, topics, layout, 20)
    await gateway.start()
    try:
        await listens(settings, topics, partitions)

        def command(data: Any) -> Envelope[Any]:
            return Envelope[Any](key=CAMPAIGN, correlation_id="idle", data=data)

        assert (await gateway.decide(command(define()))).outcome == "accepted"
        mine = TopicPartition(topics.events.name, kafka.partition_for(CAMPAIGN, partitions))
        written = await end_of(bootstrap, mine)
        # idle: each refresh (every second here) aborts the begun transaction, which writes
        # an abort marker on the event partition; wait for 13 s worth of them, past the
        # broker's check, which would have aborted an unrefreshed one and fenced its producer
        async with asyncio.timeout(60):
            while await end_of(bootstrap, mine) < written + 13:
                assert not running.done(), running
                await asyncio.sleep(0.5)
        reply = await gateway.decide(command(redeem(1)))
        assert reply.outcome == "accepted", reply
        assert not running.done()
    finally:
        await gateway.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    reader = kafka.reader(bootstrap)
    await reader.start()
    try:
        reader.subscribe([topics.events.name])
        found: list[Any] = []
        async with asyncio.timeout(30):
            while len(found) < 2:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    found.extend(EVENTS.decode(r.value).data for r in records)
    finally:
        await reader.stop()
    assert [type(e) for e in found] == [CampaignDefined, CodeRedeemed]


async def end_of(bootstrap: str, tp: TopicPartition) -> int:
    """The partition's end, transactions' markers included."""
    reader = kafka.reader(bootstrap, committed_only=False)
    await reader.start()
    try:
        return int((await reader.end_offsets([tp]))[tp])
    finally:
        await reader.stop()

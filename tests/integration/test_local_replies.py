"""A decider answers a gateway of another process of the same host through a local socket, not
the replies topic; a sender it cannot reach that way gets its reply through the topic."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition

from contracts.codec import REPLIES
from contracts.commands import DefineCampaign
from contracts.envelope import Envelope
from contracts.money import AmountOff
from contracts.replies import Reply
from contracts.topics import Topics, declare
from services.coupons.bus import kafka, local_replies
from services.coupons.bus.gateway import CommandGateway
from services.coupons.bus.topics import ensure_topics
from services.coupons.decider import Decider
from services.coupons.settings import Settings


def define(campaign_id: str) -> Envelope[DefineCampaign]:
    data = DefineCampaign(
        campaign_id=campaign_id, name=campaign_id, discount=AmountOff(amount_off=1, currency="EUR")
    )
    return Envelope[DefineCampaign](key=campaign_id, correlation_id=campaign_id, data=data)


@pytest.fixture
async def topics(settings: Settings) -> AsyncIterator[tuple[Topics, dict[str, int]]]:
    """The test's topics, and a decider over them that answers no gateway in memory, as if it
    ran in another process."""
    topics = declare(settings.topic_prefix, settings.partitions)
    layout = await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    decider = Decider(settings.kafka_bootstrap_servers, topics, layout[topics.commands.name])
    running = asyncio.create_task(decider.run())
    try:
        yield topics, layout
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def replies_on_the_topic(settings: Settings) -> int:
    """How many replies were ever written to the test's replies topic."""
    topic = declare(settings.topic_prefix, settings.partitions).replies.name
    reader = kafka.reader(settings.kafka_bootstrap_servers, committed_only=False)
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return sum((await reader.end_offsets(tps)).values())
    finally:
        await reader.stop()


async def test_a_gateway_of_another_process_is_answered_through_the_local_socket(
    settings: Settings, topics: tuple[Topics, dict[str, int]]
) -> None:
    declared, layout = topics
    gateway = CommandGateway(settings.kafka_bootstrap_servers, declared, layout, 20)
    await gateway.start()
    try:
        replies = [await gateway.decide(define(f"c{i}")) for i in range(3)]
    finally:
        await gateway.stop()
    assert [r.outcome for r in replies] == ["accepted"] * 3
    assert await replies_on_the_topic(settings) == 0


async def test_a_sender_out_of_reach_is_answered_through_the_replies_topic(
    settings: Settings, topics: tuple[Topics, dict[str, int]]
) -> None:
    declared, layout = topics
    command = define("c")
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    reader = kafka.reader(settings.kafka_bootstrap_servers)
    await reader.start()
    try:
        reader.subscribe([declared.replies.name])
        await producer.send_and_wait(
            declared.commands.name,
            command.to_bytes(),
            key=command.key.encode(),
            partition=kafka.partition_for(command.key, layout[declared.commands.name]),
            headers=[(local_replies.HEADER, b"no-gateway-listens-here")],
        )
        found: list[Reply] = []
        async with asyncio.timeout(60):
            while not found:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    found.extend(REPLIES.decode(r.value).data for r in records)
    finally:
        await reader.stop()
        await producer.stop()
    assert [(r.command_id, r.outcome) for r in found] == [(command.id, "accepted")]

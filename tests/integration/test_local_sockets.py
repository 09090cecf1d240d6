"""Processes of the same host skip the broker where they can: a gateway hands its commands to
the decider of their partition through a local socket, and is answered through another. What
they cannot reach that way goes through the topics, and nothing is lost or decided twice."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from contracts.codec import REPLIES
from contracts.commands import DefineCampaign
from contracts.envelope import Envelope
from contracts.money import AmountOff
from contracts.replies import Reply
from contracts.topics import Topics, declare
from services.coupons import decider as decider_module
from services.coupons.bus import gateway as gateway_module
from services.coupons.bus import kafka, local_sockets
from services.coupons.bus.gateway import CommandGateway
from services.coupons.bus.topics import ensure_topics
from services.coupons.decider import Decider
from services.coupons.settings import Settings
from tests.integration.helpers import listens, records_on, replies_on_the_topic

pytestmark = pytest.mark.integration


def define(campaign_id: str) -> Envelope[DefineCampaign]:
    data = DefineCampaign(
        campaign_id=campaign_id, name=campaign_id, discount=AmountOff(amount_off=1, currency="EUR")
    )
    return Envelope[DefineCampaign](key=campaign_id, correlation_id=campaign_id, data=data)


@contextlib.asynccontextmanager
async def deciding(
    settings: Settings, topics: Topics, layout: dict[str, int], *, listening: bool = True
) -> AsyncIterator[None]:
    """A decider over `topics` that answers no gateway in memory, as if it ran in another
    process; with `listening`, once it listens for the commands of every partition."""
    decider = Decider(settings.kafka_bootstrap_servers, topics, layout[topics.commands.name])
    running = asyncio.create_task(decider.run())
    try:
        if listening:
            await listens(settings, topics, layout[topics.commands.name])
        yield
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


@contextlib.asynccontextmanager
async def a_zombie_on_p0(
    settings: Settings,
) -> AsyncIterator[tuple[Topics, dict[str, int], local_sockets.Inbox, list[bytes]]]:
    """One partition's topics (every command is p0's), and a process that holds p0's decider
    socket name but never decides (a previous owner of the partition, going away): it
    swallows what is handed to it, into the list yielded."""
    declared = declare(settings.topic_prefix, 1)
    layout = await ensure_topics(settings.kafka_bootstrap_servers, declared, 1)
    address = local_sockets.owner(settings.kafka_bootstrap_servers, declared.commands.name, 0)
    swallowed: list[bytes] = []
    zombie = local_sockets.Inbox(address, swallowed.append)
    assert zombie.open()
    try:
        yield declared, layout, zombie, swallowed
    finally:
        zombie.close()


@pytest.fixture
async def topics(settings: Settings) -> AsyncIterator[tuple[Topics, dict[str, int]]]:
    """The test's topics, with a decider over them."""
    topics = declare(settings.topic_prefix, settings.partitions)
    layout = await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    async with deciding(settings, topics, layout):
        yield topics, layout


@pytest.fixture
async def gateway(
    settings: Settings, topics: tuple[Topics, dict[str, int]]
) -> AsyncIterator[CommandGateway]:
    declared, layout = topics
    gateway = CommandGateway(settings.kafka_bootstrap_servers, declared, layout, 20)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def decided_through_the_topic(
    settings: Settings, topics: tuple[Topics, dict[str, int]], command: Envelope[DefineCampaign]
) -> Reply:
    """Append `command` to the commands topic for a sender out of reach of the local sockets;
    its reply comes through the replies topic."""
    declared, layout = topics
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
            headers=[(local_sockets.HEADER, b"no-gateway-listens-here")],
        )
        found: list[Reply] = []
        async with asyncio.timeout(60):
            while not found:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    found.extend(REPLIES.decode(r.value).data for r in records)
    finally:
        await reader.stop()
        await producer.stop()
    assert len(found) == 1, found
    return found[0]


async def test_a_gateway_of_this_host_hands_commands_over_and_is_answered_without_the_broker(
    settings: Settings, topics: tuple[Topics, dict[str, int]], gateway: CommandGateway
) -> None:
    declared, _ = topics
    replies = [await gateway.decide(define(f"c{i}")) for i in range(3)]
    assert [r.outcome for r in replies] == ["accepted"] * 3
    assert await records_on(settings, declared.commands.name) == 0
    assert await replies_on_the_topic(settings) == 0
    assert await records_on(settings, declared.events.name) >= 3


async def test_a_sender_out_of_reach_is_answered_through_the_replies_topic(
    settings: Settings, topics: tuple[Topics, dict[str, int]]
) -> None:
    command = define("c")
    reply = await decided_through_the_topic(settings, topics, command)
    assert (reply.command_id, reply.outcome, reply.duplicate) == (command.id, "accepted", False)


async def test_a_command_both_handed_over_and_appended_is_decided_once(
    settings: Settings, topics: tuple[Topics, dict[str, int]], gateway: CommandGateway
) -> None:
    """What a gateway does when a handed command's reply is late: append it after all."""
    command = define("twice")
    first = await gateway.decide(command)
    again = await decided_through_the_topic(settings, topics, command)
    assert first.outcome == again.outcome == "accepted"
    assert again.duplicate and not first.duplicate
    assert again.events == first.events, "answered with the first delivery's events"


async def test_a_command_lost_in_a_handover_is_appended_to_the_topic_and_decided(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that holds the decider's socket name but never decides (a previous owner of
    the partition, going away) swallows the command; the gateway appends it to the topic once
    no reply came, and the decider, which owns the partition, decides it. Once the name is
    free, the decider takes it, and commands go through the socket again."""
    monkeypatch.setattr(gateway_module, "HANDOVER_PATIENCE_S", 0.5)
    async with (
        a_zombie_on_p0(settings) as (declared, layout, zombie, swallowed),
        deciding(settings, declared, layout, listening=False),
    ):
        gateway = CommandGateway(settings.kafka_bootstrap_servers, declared, layout, 20)
        await gateway.start()
        try:
            lost = await gateway.decide(define("lost"))
            assert len(swallowed) == 1
            assert await records_on(settings, declared.commands.name, 1) == 1
            zombie.close()
            await asyncio.sleep(2 * decider_module.REBIND_S)
            handed = await gateway.decide(define("handed"))
        finally:
            await gateway.stop()
        assert await records_on(settings, declared.commands.name, 1) == 1, "not appended"
    assert (lost.outcome, handed.outcome) == ("accepted", "accepted")
    assert len(swallowed) == 1


async def test_a_handover_whose_caller_resends_is_never_appended_as_well(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The automations' sender sends an unanswered run again itself, with the same key: a
    command it hands over (here to a process that swallows it) is waited for until the
    gateway's timeout, well past the hand-over's patience, then reported pending, and never
    appended to the topic too (which decided it twice under load)."""
    monkeypatch.setattr(gateway_module, "HANDOVER_PATIENCE_S", 0.2)
    async with a_zombie_on_p0(settings) as (declared, layout, _, swallowed):
        gateway = CommandGateway(settings.kafka_bootstrap_servers, declared, layout, 1.5)
        await gateway.start()
        try:
            with pytest.raises(gateway_module.DecisionPending):
                await gateway.decide(define("resent-by-its-caller"), caller_resends=True)
        finally:
            await gateway.stop()
    assert len(swallowed) == 1
    assert await records_on(settings, declared.commands.name, 1) == 0, "not appended"

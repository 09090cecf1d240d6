"""A decider killed with SIGKILL mid-stream resumes without losing or duplicating a decision:
every command gets exactly one committed event, whatever the kill interrupted, and a
redemption cap holds exactly across the kills. It resumes where it committed, not before."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from contracts.checkout import Cart, Customer
from contracts.codec import EVENTS, REPLIES
from contracts.commands import DefineCampaign, RedeemCode
from contracts.envelope import Envelope
from contracts.events import CampaignDefined, CodeRedeemed, CommandRejected
from contracts.money import AmountOff
from contracts.reasons import Reason
from contracts.replies import Reply
from contracts.rules import Limits
from contracts.topics import Topics, declare
from services.coupons.bus import gateway as gateway_module
from services.coupons.bus import kafka
from services.coupons.bus.gateway import CommandGateway
from services.coupons.bus.topics import ensure_topics
from services.coupons.settings import Settings
from tests.integration.helpers import listens, records_on

pytestmark = pytest.mark.integration

COMMANDS = 400


def start_decider(settings: Settings, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "COUPONS_TOPIC_PREFIX": settings.topic_prefix,
        "COUPONS_PARTITIONS": str(settings.partitions),
        "COUPONS_COMPONENTS": "decider",
        "COUPONS_PORT": "0",
        **extra,
    }
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.coupons.cli", "serve"], env=env, stdout=out, stderr=out
        )


async def committed(settings: Settings, topic: str, expect: int) -> list[ConsumerRecord[Any, Any]]:
    """Every committed record of `topic`, once `expect` are there and two quiet seconds have
    passed (so a record too many shows)."""
    consumer = kafka.reader(settings.kafka_bootstrap_servers)
    consumer.subscribe([topic])
    await consumer.start()
    seen: list[ConsumerRecord[Any, Any]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 90
        while len(seen) < expect and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen.extend(records)
        for records in (await consumer.getmany(timeout_ms=2000)).values():  # nothing extra
            seen.extend(records)
    finally:
        await consumer.stop()
    return seen


async def committed_events(settings: Settings, expect: int) -> list[Envelope]:  # type: ignore[type-arg]
    topic = declare(settings.topic_prefix, settings.partitions).events.name
    return [EVENTS.decode(r.value) for r in await committed(settings, topic, expect)]


async def committed_replies(settings: Settings, expect: int) -> list[Envelope]:  # type: ignore[type-arg]
    topic = declare(settings.topic_prefix, settings.partitions).replies.name
    return [REPLIES.decode(r.value) for r in await committed(settings, topic, expect)]


async def command_topics(settings: Settings) -> tuple[Topics, int]:
    """The test's topics, created, and the command topic's partition count."""
    topics = declare(settings.topic_prefix, settings.partitions)
    layout = await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    return topics, layout[topics.commands.name]


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    topics, partitions = await command_topics(settings)
    log = tmp_path / "decider.log"
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    sent: list[Envelope[DefineCampaign]] = []

    async def send(count: int) -> None:
        for _ in range(count):
            i = len(sent)
            command = Envelope[DefineCampaign](
                key=f"c{i}",
                correlation_id=f"corr-{i}",
                data=DefineCampaign(
                    campaign_id=f"c{i}",
                    name=f"n{i}",
                    discount=AmountOff(amount_off=100, currency="EUR"),
                ),
            )
            sent.append(command)
            await producer.send(
                topics.commands.name,
                command.to_bytes(),
                key=command.key.encode(),
                partition=kafka.partition_for(command.key, partitions),
            )
            await asyncio.sleep(0.004)
        await producer.flush()

    try:
        decider = start_decider(settings, log)
        for _ in range(2):
            await listens(settings, topics, partitions)  # it holds every partition: now
            flowing = asyncio.create_task(send(COMMANDS // 4))
            await asyncio.sleep(0.6)
            decider.send_signal(signal.SIGKILL)
            decider.wait()
            await flowing
            decider = start_decider(settings, log)
        await send(COMMANDS - len(sent))
        events = await committed_events(settings, COMMANDS)
    finally:
        await producer.stop()
        decider.terminate()
        decider.wait(timeout=30)

    defined = [e for e in events if isinstance(e.data, CampaignDefined)]
    assert len(events) == len(defined) == COMMANDS, log.read_text()[-2000:]
    assert sorted(e.causation_id for e in defined) == sorted(c.id for c in sent)


def capped_campaign() -> list[Envelope[Any]]:
    """A campaign capped at 120 redemptions, then 300 redemptions of its code by as many
    contacts, each with its own idempotency key."""
    define = DefineCampaign(
        campaign_id="capped",
        name="Capped",
        code="CAP120",
        discount=AmountOff(amount_off=100, currency="EUR"),
        limits=Limits(max_redemptions=120, per_contact=None),
    )
    commands: list[Envelope[Any]] = [
        Envelope[DefineCampaign](key="capped", correlation_id="define", data=define)
    ]
    for i in range(300):
        redeem = RedeemCode(
            campaign_id="capped",
            redemption_id=f"r{i}",
            code="CAP120",
            customer=Customer(contact_id=f"contact-{i}"),
            cart=Cart(currency="EUR", amount=1000),
            order_ref=f"order-{i}",
        )
        commands.append(
            Envelope[RedeemCode](
                key="capped", correlation_id=f"corr-{i}", idempotency_key=f"k{i}", data=redeem
            )
        )
    return commands


async def test_sigkill_while_redeeming_keeps_the_cap_exact(
    settings: Settings, tmp_path: Path
) -> None:
    """300 redemptions against a cap of 120, two SIGKILLs in the middle: exactly 120 are
    accepted, the rest refused as exhausted, and each command is decided exactly once."""
    topics, partitions = await command_topics(settings)
    campaign_partition = kafka.partition_for("capped", partitions)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    commands = capped_campaign()

    async def send(batch: list[Envelope[Any]]) -> None:
        for command in batch:
            await producer.send(
                topics.commands.name,
                command.to_bytes(),
                key=b"capped",
                partition=campaign_partition,
            )
            await asyncio.sleep(0.004)
        await producer.flush()

    log = tmp_path / "decider.log"
    try:
        decider = start_decider(settings, log)
        await send(commands[:50])
        for start in (50, 150):
            flowing = asyncio.create_task(send(commands[start : start + 100]))
            await asyncio.sleep(0.5)
            decider.send_signal(signal.SIGKILL)
            decider.wait()
            await flowing
            decider = start_decider(settings, log)
        await send(commands[250:])
        events = await committed_events(settings, len(commands))
    finally:
        await producer.stop()
        decider.terminate()
        decider.wait(timeout=30)

    assert len(events) == len(commands), log.read_text()[-2000:]
    assert sorted(str(e.causation_id) for e in events) == sorted(str(c.id) for c in commands)
    redeemed = [e for e in events if isinstance(e.data, CodeRedeemed)]
    refused = [e for e in events if isinstance(e.data, CommandRejected)]
    assert len(redeemed) == 120
    assert {e.data.reason for e in refused} == {Reason.EXHAUSTED} and len(refused) == 180


async def test_sigkill_mid_handover_loses_and_duplicates_nothing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands a gateway of this host hands to the decider through its socket are not durable
    until decided: a SIGKILL loses the ones it held, and their gateway appends them to the topic
    when no reply comes (commands sent while no decider listens go there at once). Across two
    kills every caller is answered, each command is decided once, and the cap holds exactly."""
    monkeypatch.setattr(gateway_module, "HANDOVER_PATIENCE_S", 1.0)
    topics = declare(settings.topic_prefix, settings.partitions)
    layout = await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    gateway = CommandGateway(settings.kafka_bootstrap_servers, topics, layout, 120)
    commands = capped_campaign()
    answers: list[asyncio.Task[Reply]] = []

    async def send(batch: list[Envelope[Any]]) -> None:
        for command in batch:
            answers.append(asyncio.create_task(gateway.decide(command)))
            await asyncio.sleep(0.004)

    log = tmp_path / "decider.log"
    await gateway.start()
    try:
        decider = start_decider(settings, log)
        await listens(settings, topics, layout[topics.commands.name])
        await send(commands[:50])
        decider.send_signal(signal.SIGSTOP)  # its socket takes the next 100, nobody decides them
        await send(commands[50:150])
        decider.send_signal(signal.SIGKILL)
        decider.wait()
        decider = start_decider(settings, log)
        await listens(settings, topics, layout[topics.commands.name])
        flowing = asyncio.create_task(send(commands[150:250]))
        await asyncio.sleep(0.5)
        decider.send_signal(signal.SIGKILL)  # mid-stream
        decider.wait()
        await flowing
        decider = start_decider(settings, log)
        await send(commands[250:])
        replies = await asyncio.gather(*answers)
        events = await committed_events(settings, len(commands))
        appended = await records_on(settings, topics.commands.name)
    finally:
        await gateway.stop()
        decider.terminate()
        decider.wait(timeout=30)

    assert 100 <= appended < len(commands), "the 100 lost were appended, many were handed over"
    assert len(events) == len(commands), log.read_text()[-2000:]
    assert sorted(str(e.causation_id) for e in events) == sorted(str(c.id) for c in commands)
    assert len([e for e in events if isinstance(e.data, CodeRedeemed)]) == 120
    outcomes = [(r.outcome, r.reason) for r in replies[1:]]
    assert outcomes.count(("accepted", None)) == 120
    assert outcomes.count(("rejected", Reason.EXHAUSTED)) == 180


async def test_a_restarted_decider_resumes_after_what_it_committed(
    settings: Settings, tmp_path: Path
) -> None:
    """The consumed offset rides on the events; a batch of retries only, with no event to
    carry it, commits it through the consumer group. A restarted decider starts after both: it
    decides (and answers) no command a second time, not even the retry."""
    topics, partitions = await command_topics(settings)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()

    def define(i: int) -> Envelope[DefineCampaign]:
        data = DefineCampaign(
            campaign_id=f"c{i}", name=f"n{i}", discount=AmountOff(amount_off=100, currency="EUR")
        )
        return Envelope[DefineCampaign](key="one-partition", correlation_id=f"corr-{i}", data=data)

    async def send(*commands: Envelope[DefineCampaign]) -> None:
        for command in commands:
            partition = kafka.partition_for(command.key, partitions)
            await producer.send_and_wait(
                topics.commands.name,
                command.to_bytes(),
                key=command.key.encode(),
                partition=partition,
            )

    first, last = [define(i) for i in range(20)], define(20)
    log = tmp_path / "decider.log"
    decider = start_decider(settings, log)
    try:
        await send(*first)
        assert len(await committed_replies(settings, 20)) == 20
        await send(first[0])  # a retry: answered from the memo, appends nothing
        replies = await committed_replies(settings, 21)
        assert [r.data.duplicate for r in replies].count(True) == 1, log.read_text()[-2000:]
        decider.send_signal(signal.SIGKILL)
        decider.wait()
        decider = start_decider(settings, log)
        await send(last)
        replies = await committed_replies(settings, 22)
    finally:
        await producer.stop()
        decider.terminate()
        decider.wait(timeout=30)

    assert len(replies) == 22, log.read_text()[-2000:]
    assert sorted(r.data.command_id for r in replies) == sorted(
        [c.id for c in first] + [first[0].id, last.id]
    )


@pytest.mark.parametrize("suffix", ["", ".b", ".c"])
async def test_a_new_decider_fences_a_zombie_of_any_of_its_transactional_ids(
    settings: Settings, tmp_path: Path, suffix: str
) -> None:
    """A partition's three transactional producers take turns; a writer of p that lost it (a
    zombie) may hold any of their ids with a transaction open on event partition p. The new
    writer fences all three: the zombie's transaction is aborted (an open one would hold every
    later event of p from read-committed consumers for the transaction timeout) and it cannot
    commit."""
    topics, partitions = await command_topics(settings)
    mine = kafka.partition_for("k", partitions)
    zombie = kafka.producer(
        settings.kafka_bootstrap_servers,
        transactional_id=f"{topics.commands.name}.decider.p{mine}{suffix}",
    )
    await zombie.start()
    await zombie.begin_transaction()
    await (await zombie.send(topics.events.name, b"from-the-zombie", partition=mine))
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    data = DefineCampaign(
        campaign_id="c", name="c", discount=AmountOff(amount_off=1, currency="EUR")
    )
    command = Envelope[DefineCampaign](key="k", correlation_id="c", data=data)
    log = tmp_path / "decider.log"
    decider = start_decider(settings, log)
    try:
        await producer.send_and_wait(
            topics.commands.name, command.to_bytes(), key=b"k", partition=mine
        )
        # well within the zombie's transaction timeout (60 s), which would also abort it
        events = await asyncio.wait_for(committed_events(settings, 1), 30)
        with pytest.raises(KafkaError):
            await zombie.commit_transaction()
    finally:
        await producer.stop()
        await zombie.stop()
        decider.terminate()
        decider.wait(timeout=30)
    assert [e.causation_id for e in events] == [command.id], log.read_text()[-2000:]


async def test_unreadable_commands_are_dead_lettered_once_and_the_rest_decided(
    settings: Settings, tmp_path: Path
) -> None:
    """Junk and a command on the wrong partition go to the dead-letter topic with their reason
    and origin; the commands around them are decided; a restarted decider parks none again."""
    topics, partitions = await command_topics(settings)
    mine = kafka.partition_for("k", partitions)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()

    def define(key: str) -> Envelope[DefineCampaign]:
        data = DefineCampaign(
            campaign_id=key, name=key, discount=AmountOff(amount_off=100, currency="EUR")
        )
        return Envelope[DefineCampaign](key="k", correlation_id=key, data=data)

    async def send(value: bytes, partition: int = mine) -> None:
        await producer.send_and_wait(topics.commands.name, value, key=b"k", partition=partition)

    log = tmp_path / "decider.log"
    decider = start_decider(settings, log)
    try:
        await send(b"{not json")  # alone in its batch: no event carries its offset
        parked = await committed(settings, topics.dead_letters.name, 1)
        assert len(parked) == 1, log.read_text()[-2000:]
        before, after = define("before"), define("after")
        await send(before.to_bytes())
        await send(define("elsewhere").to_bytes(), partition=(mine + 1) % partitions)
        await send(after.to_bytes())
        replies = await committed_replies(settings, 2)
        decider.send_signal(signal.SIGKILL)
        decider.wait()
        decider = start_decider(settings, log)
        last = define("last")
        await send(last.to_bytes())
        replies = await committed_replies(settings, 3)
        parked = await committed(settings, topics.dead_letters.name, 2)
    finally:
        await producer.stop()
        decider.terminate()
        decider.wait(timeout=30)

    assert sorted(r.data.command_id for r in replies) == sorted([before.id, after.id, last.id])
    headers = [dict(record.headers) for record in parked]
    assert [(h["reason"], h["source_topic"]) for h in headers] == [
        (b"invalid_json", topics.commands.name.encode()),
        (b"wrong_partition", topics.commands.name.encode()),
    ], log.read_text()[-2000:]

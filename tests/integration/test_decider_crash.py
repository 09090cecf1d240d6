"""A decider killed with SIGKILL mid-stream resumes without losing or duplicating a decision:
every command gets exactly one committed event, whatever the kill interrupted."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from contracts.codec import EVENTS
from contracts.commands import DefineCampaign
from contracts.envelope import Envelope
from contracts.events import CampaignDefined
from contracts.money import AmountOff
from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.bus.topics import ensure_topics
from services.coupons.settings import Settings

COMMANDS = 400


def start_decider(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "COUPONS_TOPIC_PREFIX": settings.topic_prefix,
        "COUPONS_PARTITIONS": str(settings.partitions),
        "COUPONS_COMPONENTS": "decider",
        "COUPONS_PORT": "0",
    }
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.coupons.cli", "serve"], env=env, stdout=out, stderr=out
        )


async def committed_events(
    settings: Settings, expect: int, timeout_s: float = 90
) -> list[Envelope]:  # type: ignore[type-arg]
    topics = declare(settings.topic_prefix, settings.partitions)
    consumer = AIOKafkaConsumer(
        topics.events.name,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: list[Envelope] = []  # type: ignore[type-arg]
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(seen) < expect and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen.extend(EVENTS.decode(r.value) for r in records)
        for records in (await consumer.getmany(timeout_ms=2000)).values():  # nothing extra
            seen.extend(EVENTS.decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return seen


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    topics = declare(settings.topic_prefix, settings.partitions)
    partitions = (await ensure_topics(settings.kafka_bootstrap_servers, topics, 1))[
        topics.commands.name
    ]
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
            await asyncio.sleep(4)  # let it join and decide a while, then kill it mid-stream
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

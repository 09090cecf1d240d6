"""A decider's fold longer than its consumer group's timeouts keeps its group membership: the
fold runs beside the engine's loop, not inside the rebalance callback (during which aiokafka
sends no heartbeat), so the partitions are folded once, not given up and folded again."""

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.commands import DefineCampaign
from contracts.envelope import Envelope
from contracts.money import AmountOff
from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.bus.topics import ensure_topics
from services.coupons.decider import CampaignAggregate
from services.coupons.settings import Settings
from services.coupons.writer.clients import KafkaClients
from services.coupons.writer.engine import Writers
from tests.integration.helpers import records_on

pytestmark = pytest.mark.integration

SESSION_MS = 6_000  # the broker's minimum (group.min.session.timeout.ms)
FOLD_S = 9.0  # longer than the session, the rebalance and the poll interval below


class SlowFolds:
    """The real clients, but a group with small timeouts, and every fold FOLD_S longer (its
    reader starts late, as on a long log or a starved CPU); counts the folds begun."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._real = KafkaClients(bootstrap)
        self.transaction_timeout_s = self._real.transaction_timeout_s
        self.folds = 0

    def group_reader(self, group_id: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=1_000,
            rebalance_timeout_ms=SESSION_MS,
            max_poll_interval_ms=3_000,
        )

    def reader(self) -> AIOKafkaConsumer:
        return _SlowReader(
            self, bootstrap_servers=self._bootstrap, isolation_level="read_committed"
        )

    def producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        return self._real.producer(transactional_id)


class _SlowReader(AIOKafkaConsumer):  # type: ignore[misc]
    def __init__(self, folds: SlowFolds, **config: Any) -> None:
        super().__init__(**config)
        self._folds = folds

    async def start(self) -> None:
        self._folds.folds += 1
        await asyncio.sleep(FOLD_S)
        await super().start()


async def test_a_fold_longer_than_the_group_timeouts_does_not_lose_the_membership(
    settings: Settings,
) -> None:
    bootstrap, partitions = settings.kafka_bootstrap_servers, settings.partitions
    topics = declare(settings.topic_prefix, partitions)
    await ensure_topics(bootstrap, topics, 1)
    clients = SlowFolds(bootstrap)
    writers = Writers(CampaignAggregate(topics), bootstrap, topics, partitions, clients=clients)
    running = asyncio.create_task(writers.run())
    producer = kafka.producer(bootstrap)
    await producer.start()
    try:
        async with asyncio.timeout(FOLD_S * 4):
            while not writers.ready:
                assert not running.done(), running
                await asyncio.sleep(0.1)
        assert clients.folds == partitions  # one fold each, side by side

        # decided after the folds, by the same member: one that had lost its membership
        # would have given its partitions up and folded them again by now
        data = DefineCampaign(
            campaign_id="c", name="c", discount=AmountOff(amount_off=1, currency="EUR")
        )
        command = Envelope[DefineCampaign](key="c", correlation_id="c", data=data)
        partition = kafka.partition_for("c", partitions)
        await producer.send_and_wait(
            topics.commands.name, command.to_bytes(), key=b"c", partition=partition
        )
        async with asyncio.timeout(FOLD_S * 2):
            while await records_on(settings, topics.events.name) < 1:
                assert not running.done(), running
                await asyncio.sleep(0.2)
        # and it stays so for a session more: a member the group dropped (its heartbeats
        # stopped for the fold) would learn it at its next heartbeat, a second from now,
        # and give up and fold its partitions again; nothing but time shows its absence
        loop = asyncio.get_running_loop()
        watched_until = loop.time() + SESSION_MS / 1000
        while loop.time() < watched_until:
            assert writers.ready and clients.folds == partitions
            await asyncio.sleep(0.2)
    finally:
        await producer.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

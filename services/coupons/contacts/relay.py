"""The outbox relay: publishes entered/left messages from `segment_outbox` to the public topic
`growthos.segment-membership.v1`, keyed by contact id, in the order they were written.

At least once: a message is deleted only after Kafka acknowledged it (acks=all), so a crash
between the two publishes it again with the same `id`; consumers dedupe by it. One relay
publishes at a time (an advisory lock), which keeps each contact's messages in order."""

import asyncio

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from contracts.topics import Topics
from services.coupons.bus import kafka
from services.coupons.contacts import store
from services.coupons.store.woken import run_woken

log = structlog.get_logger(__name__)

BATCH = 5000  # messages a step: fewer round trips to PostgreSQL (docs/performance/contacts.md)
RECHECK_S = 1.0
LOCK_ID = 0x73656773  # "segs"
_PARTITIONER = DefaultPartitioner()


class OutboxRelay:
    def __init__(
        self, bootstrap: str, database_url: str, topics: Topics, pool: asyncpg.Pool
    ) -> None:
        self._bootstrap = bootstrap
        self._database_url = database_url
        self._topic = topics.segment_membership.name
        self._pool = pool

    async def run(self) -> None:
        producer = kafka.producer(self._bootstrap)
        await producer.start()

        async def step() -> bool:
            return await self.publish(producer) == BATCH

        async def recheck() -> float:
            return RECHECK_S

        try:
            await run_woken(self._database_url, store.OUTBOX_CHANNEL, step, recheck)
        finally:
            await producer.stop()

    async def publish(self, producer: AIOKafkaProducer) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK_ID):
                return 0
            rows = await conn.fetch(
                "SELECT seq, contact_id, message::text FROM segment_outbox ORDER BY seq LIMIT $1",
                BATCH,
            )
            if not rows:
                return 0
            sent = await _send_in_batches(producer, self._topic, rows)
            await asyncio.gather(*sent)
            await conn.execute(
                "DELETE FROM segment_outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows]
            )
        log.info("contacts.published", messages=len(rows))
        return len(rows)


async def _send_in_batches(
    producer: AIOKafkaProducer, topic: str, rows: list[asyncpg.Record]
) -> list[asyncio.Future[object]]:
    """Send `rows` (in order) as record batches, one per partition at a time, each row to the
    partition `send` would pick for its key (the producer's default partitioner): a batch
    costs aiokafka far less Python than a `send` a message (docs/performance/contacts.md).
    The futures of the batches sent."""
    partitions = sorted(await producer.partitions_for(topic))
    open_batches: dict[int, BatchBuilder] = {}
    sent = []
    for row in rows:
        key, value = row["contact_id"].encode(), row["message"].encode()
        partition = _PARTITIONER(key, partitions, partitions)
        batch = open_batches.get(partition)
        if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
            if batch is not None:  # full: send it, start the next one
                sent.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    for partition, batch in open_batches.items():
        sent.append(await producer.send_batch(batch, topic, partition=partition))
    return sent

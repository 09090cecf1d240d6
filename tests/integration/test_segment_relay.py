"""The outbox relay on real Kafka and PostgreSQL: it sends the membership messages as record
batches, each to the partition the producer's own `send` picks for its key, in the order
they were written, and empties the outbox only once Kafka acknowledged them."""

import json

import asyncpg
import pytest

from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.bus.topics import ensure_topics
from services.coupons.contacts.relay import BATCH, OutboxRelay
from services.coupons.settings import Settings

pytestmark = pytest.mark.integration
CONTACTS = 50
PER_CONTACT = 120
"""6,000 messages: more than a step (BATCH) and more than a record batch holds per partition."""


async def test_the_relay_publishes_in_order_on_the_partition_send_picks(
    settings: Settings,
) -> None:
    topics = declare(settings.topic_prefix, settings.partitions)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    topic = topics.segment_membership.name
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        written = [(f"contact-{c}", n) for n in range(PER_CONTACT) for c in range(CONTACTS)]
        await pool.execute(
            """INSERT INTO segment_outbox (contact_id, message)
               SELECT c, jsonb_build_object('contact_id', c, 'n', n)
               FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS w(c, n, i) ORDER BY i""",
            [c for c, _ in written],
            [n for _, n in written],
        )
        relay = OutboxRelay(settings.kafka_bootstrap_servers, settings.database_url, topics, pool)
        steps = [await relay.publish(producer)]
        while steps[-1]:
            steps.append(await relay.publish(producer))
        assert steps == [BATCH, len(written) - BATCH, 0]
        assert await pool.fetchval("SELECT count(*) FROM segment_outbox") == 0
        # where `send` puts each key: a probe on another topic of as many partitions
        probe = topics.contact_events.name
        assert await producer.partitions_for(probe) == await producer.partitions_for(topic)
        sent = {
            f"contact-{c}": (await (await producer.send(probe, b"{}", key=f"contact-{c}".encode())))
            for c in range(CONTACTS)
        }
        picked = {key: metadata.partition for key, metadata in sent.items()}
    finally:
        await producer.stop()
        await pool.close()

    consumer = kafka.reader(settings.kafka_bootstrap_servers)
    consumer.subscribe([topic])
    await consumer.start()
    seen: dict[str, list[int]] = {}
    try:
        for _ in range(60):  # a minute at most
            if sum(map(len, seen.values())) >= len(written):
                break
            for partition, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    message = json.loads(record.value)
                    assert record.key.decode() == message["contact_id"]
                    assert partition.partition == picked[message["contact_id"]]
                    seen.setdefault(message["contact_id"], []).append(message["n"])
    finally:
        await consumer.stop()
    assert seen == {f"contact-{c}": list(range(PER_CONTACT)) for c in range(CONTACTS)}

"""The pinned broker must support what the engine relies on, through aiokafka: idempotent
producing with acks=all, and transactions (commit, abort, offsets, zombie fencing)."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from services.coupons.bus import kafka
from services.devstack.stack import Endpoints

pytestmark = pytest.mark.integration


async def new_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"protocol-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def read_all(
    bootstrap: str, topic: str, expect: int, isolation: str = "read_committed"
) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level=isolation
    )
    await consumer.start()
    seen: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                seen.extend(r.value for r in records)
            if len(seen) >= expect:
                await asyncio.sleep(0.5)  # and nothing more arrives
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    seen.extend(r.value for r in records)
                break
    finally:
        await consumer.stop()
    return seen


async def test_idempotent_producer_with_acks_all(endpoints: Endpoints) -> None:
    topic = await new_topic(endpoints.kafka_bootstrap_servers)
    producer = kafka.producer(endpoints.kafka_bootstrap_servers)
    await producer.start()
    try:
        for i in range(50):
            await producer.send(topic, f"m{i}".encode(), key=b"k")
        await producer.flush()
    finally:
        await producer.stop()
    assert await read_all(endpoints.kafka_bootstrap_servers, topic, 50) == [
        f"m{i}".encode() for i in range(50)
    ]


async def test_transactions_commit_abort_and_offsets(endpoints: Endpoints) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    source, sink = await new_topic(bootstrap), await new_topic(bootstrap)
    plain = kafka.producer(bootstrap)
    await plain.start()
    for i in range(3):
        await plain.send_and_wait(source, f"in{i}".encode())
    await plain.stop()

    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = kafka.reader(bootstrap, group_id=group)
    await consumer.start()
    consumer.subscribe([source])
    producer = kafka.producer(bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:6]}")
    await producer.start()
    try:
        records: list = []
        while len(records) < 3:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        async with producer.transaction():
            for record in records:
                await producer.send(sink, b"committed-" + record.value, partition=0)
            await producer.send_offsets_to_transaction(
                {TopicPartition(source, 0): records[-1].offset + 1}, group
            )
        with pytest.raises(RuntimeError):
            async with producer.transaction():
                await producer.send(sink, b"aborted", partition=0)
                raise RuntimeError("abort this transaction")
    finally:
        await producer.stop()
        await consumer.stop()

    committed = await read_all(bootstrap, sink, 3)
    assert committed == [b"committed-in0", b"committed-in1", b"committed-in2"]
    assert b"aborted" in await read_all(bootstrap, sink, 4, isolation="read_uncommitted")
    check = kafka.reader(bootstrap, group_id=group)
    await check.start()
    try:
        assert await check.committed(TopicPartition(source, 0)) == 3
    finally:
        await check.stop()


async def test_a_new_writer_fences_the_zombie_with_the_same_transactional_id(
    endpoints: Endpoints,
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    sink = await new_topic(bootstrap)
    transactional_id = f"tx-{uuid.uuid4().hex[:6]}"
    zombie = kafka.producer(bootstrap, transactional_id=transactional_id)
    await zombie.start()
    successor = kafka.producer(bootstrap, transactional_id=transactional_id)
    await successor.start()
    try:
        with pytest.raises(KafkaError):
            async with zombie.transaction():
                await (await zombie.send(sink, b"from-the-zombie", partition=0))
        async with successor.transaction():
            await successor.send(sink, b"from-the-successor", partition=0)
    finally:
        await successor.stop()
        await zombie.stop()
    assert await read_all(bootstrap, sink, 1) == [b"from-the-successor"]


async def test_a_batching_reader_takes_several_transactions_in_one_fetch(
    endpoints: Endpoints,
) -> None:
    """`kafka.reader(batch_wait_ms=...)`: the broker holds its fetch for the wait (far fewer
    bytes than `BATCH_MIN_BYTES` are there), so transactions committed meanwhile come in one
    poll instead of one poll each."""
    bootstrap = endpoints.kafka_bootstrap_servers
    topic = await new_topic(bootstrap)
    consumer = kafka.reader(bootstrap, batch_wait_ms=5_000)
    await consumer.start()
    producer = kafka.producer(bootstrap, transactional_id=f"batching-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning(TopicPartition(topic, 0))
        fetching = asyncio.create_task(consumer.getmany(timeout_ms=20_000))
        for n in range(3):  # three transactions, committed one after another
            async with producer.transaction():
                await producer.send(topic, f"t{n}".encode(), key=b"k")
        first = [r.value for records in (await fetching).values() for r in records]
    finally:
        await producer.stop()
        await consumer.stop()
    assert first == [b"t0", b"t1", b"t2"]

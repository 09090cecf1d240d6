"""services.devstack really provisions a working Kafka broker and PostgreSQL, and stops them."""

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.devstack.process import free_port, port_open
from services.devstack.stack import Endpoints, provisioned

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: that lives under a 0700 directory the postgres user (which runs
    # the server when we are root) cannot traverse.
    path = Path(tempfile.mkdtemp(prefix="devstack-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _kafka_round_trip(bootstrap: str) -> None:
    topic = f"devstack-smoke-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"hello", key=b"k1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=topic, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"k1", b"hello")
    assert (record.partition, record.offset) == (sent.partition, sent.offset)


async def _postgres_select_one(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "devstack_test"
    finally:
        await conn.close()


async def test_provisioned_stack_works_and_stops(state_dir: Path) -> None:
    kafka_port, pg_port = free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    stack = provisioned(
        state_dir, kafka_port=kafka_port, pg_port=pg_port, database="devstack_test", env=env
    )
    # provisioned() blocks while the servers start and stop: keep that off the event loop.
    endpoints: Endpoints = await asyncio.to_thread(stack.__enter__)
    try:
        assert endpoints.kafka_bootstrap_servers == f"127.0.0.1:{kafka_port}"
        assert endpoints.database_url == f"postgresql://postgres@127.0.0.1:{pg_port}/devstack_test"
        await _kafka_round_trip(endpoints.kafka_bootstrap_servers)
        await _postgres_select_one(endpoints.database_url)
    finally:
        await asyncio.to_thread(stack.__exit__, None, None, None)

    assert not port_open(kafka_port), "Kafka still listening after the stack exited"
    assert not port_open(pg_port), "PostgreSQL still listening after the stack exited"

"""Kafka client factories with the project's durability settings, key partitioning, headers."""

import functools
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2


@functools.lru_cache(maxsize=100_000)
def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), so every client agrees where a campaign lives.
    aiokafka's murmur2 is pure Python (about 20 µs a key); campaign keys repeat, so it is
    cached."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def header(headers: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    """The value of a record's header `name`, if it has one."""
    for found, value in headers:
        if found == name:
            return value
    return None


TRANSACTION_TIMEOUT_MS = 60_000
"""aiokafka's default: the broker aborts a transaction open longer, and fences its producer
(a writer refreshes a transaction it keeps begun ahead well before: `writer.transactions`)."""


def producer(
    bootstrap: str,
    *,
    transactional_id: str | None = None,
    transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS,
) -> AIOKafkaProducer:
    """acks=all and idempotence: a send that returned is durable and never duplicated."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id,
        transaction_timeout_ms=transaction_timeout_ms,
        linger_ms=1,
        request_timeout_ms=30_000,
        # A transaction begun while the broker still writes the last one's commit markers is
        # refused as CONCURRENT_TRANSACTIONS and retried after this backoff: at aiokafka's
        # default (100 ms) every back-to-back transaction of a busy decider stalls that long.
        retry_backoff_ms=5,
        max_batch_size=256 * 1024,  # a full batch blocks `send` until the one in flight is acked
    )


BATCH_MIN_BYTES = 1024 * 1024
"""A batching reader's fetch is answered once this much is there, or its wait is over."""


def reader(
    bootstrap: str,
    *,
    group_id: str | None = None,
    committed_only: bool = True,
    batch_wait_ms: int = 0,
) -> AIOKafkaConsumer:
    """A consumer that never commits by itself and sees only committed transactions; with
    `committed_only=False` its end offsets are the high watermarks, past transactions still
    in flight or whose commit markers are still being written. With `batch_wait_ms`, the
    broker holds each fetch that long (unless `BATCH_MIN_BYTES` are there): a reader off the
    latency path then takes several transactions' records a poll instead of waking at every
    commit."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        max_poll_records=1000,
        fetch_max_wait_ms=batch_wait_ms or 500,  # aiokafka's default
        fetch_min_bytes=BATCH_MIN_BYTES if batch_wait_ms else 1,
        # a member that vanished (a crash, a broker restart that lost its leave) is taken out
        # of its group after 6 s, the broker's minimum, not 10: partitions move on sooner
        session_timeout_ms=6_000,
        heartbeat_interval_ms=2_000,
    )

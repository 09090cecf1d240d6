"""Unreadable messages go to the dead-letter topic, with why and where they came from."""

from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from contracts.topics import Topics

log = structlog.get_logger(__name__)


async def dead_letter(
    producer: AIOKafkaProducer,
    topics: Topics,
    record: ConsumerRecord[Any, Any],
    reason: str,
    detail: str,
) -> None:
    """Park `record` with its reason. Awaited to the broker's ack before the caller moves on."""
    sent = await producer.send(
        topics.dead_letters.name,
        record.value,
        key=record.key,
        headers=dead_letter_headers(record, reason, detail),
    )
    await sent


def dead_letter_headers(
    record: ConsumerRecord[Any, Any], reason: str, detail: str
) -> list[tuple[str, bytes]]:
    """Why `record` is parked and where it came from; logged once, here."""
    return origin_headers(record.topic, record.partition, record.offset, reason, detail)


def origin_headers(
    topic: str, partition: int, offset: int | None, reason: str, detail: str
) -> list[tuple[str, bytes]]:
    """Why a message is parked and where it came from (`offset` None: it was handed over
    on the same host, never on the topic); logged once, here."""
    log.warning(
        "message.dead_lettered",
        reason=reason,
        detail=detail,
        topic=topic,
        partition=partition,
        offset=offset,
    )
    headers = [
        ("reason", reason.encode()),
        ("detail", detail[:1000].encode()),
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
    ]
    if offset is not None:
        headers.append(("source_offset", str(offset).encode()))
    return headers

"""Transaction markers: how many transactions the writers ran on a topic. A transaction
writes one control record (its commit or abort marker) on each partition it wrote to; a
consumer never sees them, but each takes an offset. So, between two sets of end offsets,
markers = offsets taken - records read (read_uncommitted: aborted records count as records).
On the events topic that is the writers' transactions; on `coupons.issued.v1`, those
transactions times the issued partitions each one announced to."""

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.coupons.bus import kafka as bus


async def end_offsets(kafka: str, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = bus.reader(kafka, committed_only=False)
    await consumer.start()
    try:
        found: dict[TopicPartition, int] = await consumer.end_offsets(
            [TopicPartition(topic, p) for p in range(partitions)]
        )
        return found
    finally:
        await consumer.stop()


async def markers(
    kafka: str, start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> int:
    """Control records between `start` and `end` (end offsets of the same topic)."""
    consumer: AIOKafkaConsumer = bus.reader(kafka, committed_only=False)
    await consumer.start()
    try:
        spans = {tp: (start.get(tp, 0), end[tp]) for tp in end if end[tp] > start.get(tp, 0)}
        consumer.assign(list(spans))
        for tp, (first, _) in spans.items():
            consumer.seek(tp, first)
        records = 0
        left = set(spans)
        while left:
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                records += sum(1 for r in batch if r.offset < spans[tp][1])
            for tp in list(left):
                if await consumer.position(tp) >= spans[tp][1]:
                    left.discard(tp)
        return sum(last - first for first, last in spans.values()) - records
    finally:
        await consumer.stop()

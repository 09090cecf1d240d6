"""Folding a partition's state from its event partition: from its last sound snapshot (else
offset 0) to the last committed record, for the engine as it acquires the partition. An event
that cannot be read or folded is skipped, logged and counted (docs/architecture.md, "Parked
messages"), never a crash loop."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.codec import MalformedMessage
from contracts.replies import EventPosition
from services.coupons import long_folds, parked
from services.coupons.writer import transactions
from services.coupons.writer.aggregate import Aggregate
from services.coupons.writer.batch import PartitionState
from services.coupons.writer.snapshots import Snapshots

log = structlog.get_logger(__name__)


async def partition(
    aggregate: Aggregate,
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    snapshots: Snapshots | None,
    memo_window_s: float,
    clock: Callable[[], datetime],
) -> tuple[PartitionState, int, int]:
    """The state of event partition `tp` (read with `consumer`, started and stopped here), how
    many events were folded, and the end offset folded to."""
    state = PartitionState(aggregate, memo_window_s=memo_window_s)
    await consumer.start()
    folded = 0
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        snapshot = None if snapshots is None else await snapshots.load(tp.partition, end)
        if snapshot is None:
            await consumer.seek_to_beginning(tp)
        else:
            state.states, state.consumed = snapshot.states, snapshot.consumed
            state.memo.restore(snapshot.memo)
            consumer.seek(tp, snapshot.next_offset)
        long_fold = long_folds.LongFold()
        while await consumer.position(tp) < end:
            fetched = await consumer.getmany(tp, timeout_ms=500, max_records=long_folds.SLICE)
            records = fetched.get(tp, [])
            for record in records:
                state.consumed = max(state.consumed, transactions.checkpoint_of(record.headers))
                _fold(aggregate, state, tp.partition, record)
            folded += len(records)
            state.memo.expire(clock())  # a long fold keeps only a window's keys
            await long_fold.folded(len(records), state.states, state.memo)
        state.memo.expire(clock())
    finally:
        await consumer.stop()
    return state, folded, end


def _fold(
    aggregate: Aggregate, state: PartitionState, partition: int, record: ConsumerRecord[Any, Any]
) -> None:
    try:
        event = aggregate.events.decode(record.value)
    except MalformedMessage as error:
        log.error("decider.unreadable_event", offset=record.offset, reason=error.reason)
        return
    try:
        state.apply(event, EventPosition(partition=partition, offset=record.offset))
    except Exception as error:  # noqa: BLE001 - skipped and counted, never a crash loop
        log.error(
            "decider.unfoldable_event",
            partition=partition,
            offset=record.offset,
            type=event.type,
            error=repr(error),
        )
        parked.PARKED[aggregate.name, "unfoldable_event"] += 1

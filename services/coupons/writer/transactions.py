"""A partition's writer and the commit of its batches.

Three transactional producers per partition, `...p{p}`, `...p{p}.b` and `...p{p}.c`
(`transactional_ids`), take turns, one transaction at a time: the broker writes a
transaction's commit markers after answering its commit, and refuses the same producer's next
transaction until it has (CONCURRENT_TRANSACTIONS, retried after a backoff; back-to-back
transactions of one producer hit it one and a half times each on an idle broker, measured).
The next transaction is begun (below) on the producer whose last one ended two transactions
before, whose markers are written by then. With two producers it was the one whose commit had
just been answered: a busy writer sent 1.2-1.7 AddPartitionsToTxn per transaction (refused,
then sent again after a backoff, while the batch's Produce waited for it); with three,
1.00-1.03 (`bench/txn_client.py`, docs/performance/checkout.md, "The writer's transaction
client"). No transaction sends anything before the one before it has committed.

The next transaction is always begun ahead, the event partition added to it
(AddPartitionsToTxn), as soon as the one before has been handed its batch (and when a
partition is acquired): a batch, at any load, then finds its transaction open and its
partition added, and pays only Produce and EndTxn. Begun only when a command was waiting, as
before, an idle-time redemption paid the add's round trip itself (docs/performance/checkout.md,
"Against a row-lock peer and the floor"). The broker aborts a transaction left open longer
than the producer's transaction timeout, and fences its producer: a begun transaction that
waits unused for a third of it is aborted (`refresh`) and the next one begun on the next
producer, so an idle partition writes an abort marker on its event partition every
`refresh_after_s`. A writer that crashes with such a transaction open leaves nothing in it;
its next owner's fencing aborts it.

Every event carries the batch's consumed command offset in its `consumed` header: that is the
checkpoint, not the consumer group (which would cost each transaction two more round trips to
the coordinator and markers on one more partition). A batch that appends no event (every
command a retry, or unreadable) has nothing to carry it, so only then is its offset committed
through the group, in its transaction; a writer resumes from whichever of the two is further.
"""

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.producer.producer import TransactionContext

from contracts.envelope import Envelope
from contracts.replies import EventPosition
from services.coupons.bus import kafka, local_sockets
from services.coupons.writer import kafka_private
from services.coupons.writer.batch import Batch, PartitionState, Received
from services.coupons.writer.timers import Timers

log = structlog.get_logger(__name__)

CHECKPOINT = "consumed"
"""Event header: the next command offset after the event's batch."""

TURNS = ("", ".b", ".c")
"""The suffixes of a partition's transactional ids, in their turns' order."""


def transactional_ids(base: str) -> list[str]:
    """A partition's transactional ids; each fences a zombie writer's producer of the same id."""
    return [f"{base}{suffix}" for suffix in TURNS]


@dataclass
class Writer:
    """The writer of one partition: its state, its producers, what waits to be decided, the
    next transaction's batch and the one in flight."""

    partition: int
    producers: Sequence[AIOKafkaProducer]  # they take turns
    state: PartitionState
    inbox: local_sockets.Inbox
    waiting: list[Received] = field(default_factory=list)  # fetched or handed, undecided
    decided: Batch = field(default_factory=Batch)  # the next transaction's
    committing: asyncio.Task[None] | None = None  # the batch whose transaction is in flight
    committing_at: float = 0.0  # the event loop's time when it was started
    transactions: int = 0  # begun so far
    bound_at: float = 0.0  # when the writer last tried to open its inbox
    begun: asyncio.Task[TransactionContext] | None = None  # the next transaction, begun early
    begun_at: float = 0.0  # the event loop's time when it was begun
    timers: Timers = field(default_factory=Timers)

    def next_turn(self) -> AIOKafkaProducer:
        """The producer of the next transaction: neither the one whose transaction may be in
        flight nor the one whose markers may be pending."""
        return self.producers[(self.transactions + 1) % len(self.producers)]

    def take_turn(self) -> AIOKafkaProducer:
        """The next transaction's producer, whose turn it now is."""
        producer = self.next_turn()
        self.transactions += 1
        return producer


class Refreshed(Exception):
    """Why a begun transaction is aborted: it waited unused too long."""


def needs_transaction(batch: Batch) -> bool:
    """Whether committing `batch` takes a transaction: not if it has nothing to append and no
    offset to commit (every command handed over, a retry answered from the memo)."""
    return bool(batch.sends) or batch.last_fetched() is not None


def begin_next(writer: Writer, events: TopicPartition, now: float) -> None:
    """Begin the next transaction on the producer whose turn is next, its partition added."""
    writer.begun = asyncio.create_task(begin(writer.next_turn(), events))
    writer.begun_at = now


def refresh(writer: Writer, events: TopicPartition, now: float) -> None:
    """Abort the begun transaction, unused, and begin the next one on the next producer
    (the aborted one's turn is spent), before the broker's transaction timeout aborts it and
    fences its producer. Only between transactions: none may be in flight."""
    assert writer.committing is None and writer.begun is not None, "an idle begun one"
    stale = writer.begun
    writer.take_turn()  # the stale transaction's producer: its turn is spent on the abort
    writer.begun = asyncio.create_task(_aborted_then(stale, writer.next_turn(), events))
    writer.begun_at = now


async def _aborted_then(
    stale: asyncio.Task[TransactionContext], producer: AIOKafkaProducer, events: TopicPartition
) -> TransactionContext:
    """Abort the stale transaction while the next one begins on `producer`, another one."""
    began = asyncio.create_task(begin(producer, events))
    try:
        await (await stale).__aexit__(Refreshed, Refreshed(), None)
    except BaseException:
        began.cancel()
        raise
    return await began


async def begin(producer: AIOKafkaProducer, events: TopicPartition) -> TransactionContext:
    """Begin `producer`'s transaction, and add the event partition to it, ahead of its first
    send."""
    transaction = producer.transaction()
    await transaction.__aenter__()
    kafka_private.add_partition_early(producer, events)
    return transaction


async def commit(
    writer: Writer,
    batch: Batch,
    group: str,
    producer: AIOKafkaProducer | None,
    begun: asyncio.Task[TransactionContext] | None,
) -> list[tuple[Envelope[Any], int]]:
    """Send the batch in one transaction of `producer` (`begun` on it already, or begun here),
    every event carrying the consumed offset, and place its events in the memo; returns the
    appended events with their offsets. No producer: the batch needs no transaction."""
    last = batch.last_fetched()
    checkpoint = [] if last is None else [(CHECKPOINT, str(last.offset + 1).encode())]
    appended: list[tuple[Envelope[Any], asyncio.Future[Any]]] = []
    if producer is not None:
        async with contextlib.AsyncExitStack() as transaction:
            if begun is None:
                await transaction.enter_async_context(producer.transaction())
            else:  # by `begin`, on this same producer: commit or abort it on the way out
                transaction.push_async_exit(await begun)
            for send in batch.sends:
                headers = send.headers if send.event is None else [*send.headers, *checkpoint]
                acked = await producer.send(
                    send.topic, send.value, key=send.key, partition=send.partition, headers=headers
                )
                if send.event is not None:
                    appended.append((send.event, acked))
            if last is not None and not appended:  # no event carries the checkpoint
                consumed = {TopicPartition(last.topic, last.partition): last.offset + 1}
                await producer.send_offsets_to_transaction(consumed, group)
    placed = []
    for envelope, acked in appended:
        metadata = await acked  # resolved: the commit flushed every append
        position = EventPosition(partition=metadata.partition, offset=metadata.offset)
        writer.state.memo.place(envelope, position)
        placed.append((envelope, metadata.offset))
    return placed


STUCK_AFTER_S = 10.0
"""How long a transaction may be in flight before it counts as stuck (the transaction
timeout, if shorter). A commit takes milliseconds, tens at a load of 15 on this machine.
Not the transaction timeout (60 s): fencing settles the transaction at any time, and waiting
for the broker's own abort made a stuck partition a minute without checkout. A transaction
caught by a broker outage counts as stuck too: the writers restart, as they do when the
broker is away, and resume once it is back."""


class TransactionStuck(Exception):
    """A partition's transaction was still in flight after `STUCK_AFTER_S`."""


async def within(what: str, until: float, *tasks: asyncio.Future[Any]) -> None:
    """Wait for `tasks` to end, until the loop's time `until` at most; cancel those that
    have not (a stuck producer is left to the next owner's fencing). Their failures are not
    this wait's: a failed transaction is answered by no reply."""
    bound_s = max(0.0, until - asyncio.get_running_loop().time())
    done, late = await asyncio.wait(tasks, timeout=bound_s)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: each failure is reported where it happened
    for task in late:
        task.cancel()
    if late:
        log.warning("decider.abandoned", what=what, after_s=bound_s)


def checkpoint_of(headers: Any) -> int:
    """The command offset an event's transaction consumed up to (0 if it does not say)."""
    return int(kafka.header(headers, CHECKPOINT) or 0)

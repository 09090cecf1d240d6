"""The single-writer engine: the one writer of each partition of an aggregate's command topic.

For every batch of commands on partition p it decides each one against the state folded from
event partition p (`batch`), then appends the events to event partition p in ONE Kafka
transaction (`transactions`). A crash anywhere before the commit leaves no trace; after it,
everything is there. On assignment, p's two transactional producers fence any zombie writer
of p, then the state and the consumed offset are loaded from p's last snapshot and the events
after it folded (`snapshots`; from offset 0 without one), in a task beside the loop, not in
the group's rebalance callback (`acquisitions`): p's commands wait, paused, until then.

A batch takes commands from two places: the commands topic, and the local socket at which the
owner of p listens for gateways of its own host (`bus.local_sockets`), who send their commands
there instead of through the broker. A command handed over that way has no offset, so it moves
no checkpoint; one lost with its writer is appended to the topic by its gateway after a while,
and decided then (a second delivery of one decided already is a retry, answered from the
memo). The socket is opened once p's state is loaded and closed first when p is given up.

Commands keep being fetched, and decided, while a partition's transaction is in flight; the
next transaction takes all of them at once, already decided and encoded, so it only sends and
commits. Batches grow with the load instead of waiting a turn.

After a commit, the committed events and the states they changed are handed to this process's
view (`fold_here`) before the replies (`replies`), so a command answered here need not wait
for the view to fetch its events.
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.producer.producer import TransactionContext
from aiokafka.structs import ConsumerRecord

from contracts.codec import MalformedMessage
from contracts.envelope import Envelope
from contracts.replies import EventPosition, Reply
from contracts.topics import Topics
from projections.offsets import raise_rebalance_error
from services.coupons import parked
from services.coupons.bus import local_sockets
from services.coupons.bus.same_process import SameProcess
from services.coupons.domain.idempotency import RETENTION_S
from services.coupons.writer import kafka_private, transactions
from services.coupons.writer.acquisitions import Acquisitions
from services.coupons.writer.aggregate import Aggregate
from services.coupons.writer.batch import (
    MAX_BATCH,
    Batch,
    Decisions,
    Handed,
    HandedHere,
    PartitionState,
    Timed,
)
from services.coupons.writer.clients import Clients, KafkaClients
from services.coupons.writer.replies import Replies
from services.coupons.writer.snapshots import Snapshots
from services.coupons.writer.transactions import Writer

log = structlog.get_logger(__name__)

REBIND_S = 1.0
"""How often a writer whose socket name is still held elsewhere tries again."""

TakeCommitted = Callable[
    [int, tuple[int, int], Sequence[Envelope[Any]], Mapping[str, Any]], Awaitable[None]
]
"""Hand a committed transaction to this process's view: partition, (first, last) offsets, its
events, and the states they changed as they stand after them."""


async def nowhere(*_: Any) -> None:
    pass


def utc_now() -> datetime:
    return datetime.now(UTC)


class Writers:
    def __init__(
        self,
        aggregate: Aggregate,
        bootstrap: str,
        topics: Topics,
        partitions: int,
        answer_here: Callable[[Reply], bool] = lambda _: False,
        fold_here: TakeCommitted = nowhere,
        role: str = "decider",
        clients: Clients | None = None,
        clock: Callable[[], datetime] = utc_now,
        snapshots: Snapshots | None = None,
        memo_window_s: float = RETENTION_S,
        same_process: SameProcess | None = None,
    ) -> None:
        """`answer_here` resolves a wait of this process's gateway for a reply, if it has one:
        then the reply is not sent to the replies topic. `fold_here` takes each committed
        transaction into this process's view. `role` names the consumer group and the
        transactional ids (`<commands topic>.<role>`, `...p<p>`, `...p<p>.b`). `clients`
        and `clock` are Kafka's and the wall clock unless a test passes its fakes.
        `snapshots` start a partition from its last snapshot and write new ones
        (`writer.snapshots`); `memo_window_s` is how long an idempotency key is remembered.
        `same_process` takes the commands of this process's gateway in memory."""
        kafka_private.retry_concurrent_transactions_quickly()
        self._aggregate = aggregate
        self._bootstrap = bootstrap
        self._clients = clients or KafkaClients(bootstrap)
        self._clock = clock
        self._answer_here = answer_here
        self._fold_here = fold_here
        self._topics = topics
        self._decisions = Decisions(aggregate, topics, partitions, now=clock)
        self._group = f"{topics.commands.name}.{role}"
        self._writers: dict[int, Writer] = {}
        self.rebalance_error: Exception | None = None  # kept by `_Rebalance`, raised by run
        self._assigned: set[int] | None = None  # None until the group assigned us partitions
        self._replies: Replies | None = None  # one per run: a restart makes another
        self._consumer: AIOKafkaConsumer | None = None
        self._handed: asyncio.Future[None] | None = None  # resolved when a command is handed
        self._snapshots = snapshots
        self._memo_window_s = memo_window_s
        self._same_process = same_process
        self._failed: Exception | None = None  # in deciding a command handed in memory
        # a begun transaction unused this long is refreshed, well before the broker's timeout
        self._refresh_after_s = self._clients.transaction_timeout_s / 3
        self._acquisitions = Acquisitions(self._acquire)

    @property
    def ready(self) -> bool:
        """It has joined its group and holds (has folded) every partition assigned to it."""
        return self._assigned is not None and self._assigned <= self._writers.keys()

    async def run(self) -> None:
        self.rebalance_error = None  # a restart after a failed acquisition tries afresh
        self._failed = None
        self._assigned = None
        self._consumer = consumer = self._clients.group_reader(self._group)
        producer = self._clients.producer()
        outbox = local_sockets.Outbox()
        self._replies = Replies(self._topics.replies.name, producer, outbox, self._answer_here)
        await producer.start()
        await consumer.start()
        consumer.subscribe([self._topics.commands.name], listener=_Rebalance(self))
        fetching: asyncio.Task[dict[TopicPartition, list[ConsumerRecord[Any, Any]]]] | None = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Fetch while transactions are in flight: the consumer fetches a partition
                # again only once what it fetched is taken, so taking it only between
                # transactions would leave the commands sent meanwhile for the one after next.
                if fetching is None:
                    fetching = asyncio.create_task(consumer.getmany(timeout_ms=200))
                if self._handed is None or self._handed.done():
                    self._handed = loop.create_future()
                committing = [w.committing for w in self._writers.values() if w.committing]
                acquiring = self._acquisitions.waits()
                wakes: list[asyncio.Future[Any]] = [fetching, self._handed, *committing, *acquiring]
                done, _ = await asyncio.wait(
                    wakes, timeout=self._until_due(loop.time()), return_when=asyncio.FIRST_COMPLETED
                )
                if self._failed is not None:
                    raise self._failed
                if fetching in done:
                    batches, fetching = fetching.result(), None
                    raise_rebalance_error(self)
                    self._queue(consumer, batches)
                self._acquisitions.finished()
                now, ticks = self._clock(), loop.time()
                for writer in list(self._writers.values()):
                    self._listen(writer, ticks)
                    self._fire(writer, now)
                    self._advance(writer, ticks)
        finally:
            if fetching is not None:
                fetching.cancel()
                await asyncio.gather(fetching, return_exceptions=True)
            await self._acquisitions.cancel()
            await consumer.stop()
            await self._release(list(self._writers))
            await producer.stop()
            outbox.close()
            if self._snapshots is not None:
                await self._snapshots.close()

    def _queue(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        for tp, records in batches.items():
            writer = self._writers.get(tp.partition)
            if writer is None:
                # Fetched before a rebalance took the partition away; whoever owns it next
                # starts from the committed offset. If it comes back to us, we do.
                if tp in consumer.assignment():
                    consumer.seek(tp, records[0].offset)
                continue
            writer.waiting.extend(records)

    def _take_handed(self, partition: int, datagram: bytes) -> None:
        """Queue a command a gateway of this host handed over; if p is no longer ours, drop
        it (its gateway appends it to the topic when no reply comes)."""
        writer = self._writers.get(partition)
        if writer is None:
            return
        reply_to, value = local_sockets.read_command_datagram(datagram)
        writer.waiting.append(Handed(value, reply_to))
        self._wake()

    def _take_here(self, partition: int, command: Envelope[Any], reply_to: bytes | None) -> None:
        """Decide a command this process's gateway hands over in memory at once, in the
        gateway's turn of the event loop (`bus.same_process`): the loop need not wake first.
        A failure is the run loop's to raise, never the gateway's."""
        writer = self._writers.get(partition)
        if writer is None:  # given up meanwhile: its gateway appends it to the topic in time
            return
        writer.waiting.append(HandedHere(command, reply_to))
        try:
            self._step(writer, asyncio.get_running_loop().time())
        except Exception as error:  # noqa: BLE001 - raised by the run loop: the writer restarts
            self._failed = error
        self._wake()

    def _wake(self) -> None:
        """Have the run loop look again (a command came, a transaction started)."""
        if self._handed is not None and not self._handed.done():
            self._handed.set_result(None)

    def _listen(self, writer: Writer, now: float) -> None:
        """Open the writer's inbox if another process still held its name last time (the
        partition's previous owner, giving it up); take this process's commands in memory
        while it is open."""
        if not writer.inbox.is_open and now - writer.bound_at >= REBIND_S:
            writer.bound_at = now
            if writer.inbox.open() and self._same_process is not None:
                take = functools.partial(self._take_here, writer.partition)
                self._same_process.listen(writer.inbox.address, take)

    def _advance(self, writer: Writer, now: float) -> None:
        """Raise what failed (a failed transaction crashes the writer: it resumes from the
        log; so does one that could not begin, or be refreshed), then `_step`."""
        if writer.committing is not None and writer.committing.done():
            finished, writer.committing = writer.committing, None
            finished.result()
        if writer.begun is not None and writer.begun.done():
            writer.begun.result()
        self._step(writer, now)

    def _step(self, writer: Writer, now: float) -> None:
        """Decide what was fetched or handed; if no transaction is in flight, start the next
        one with everything decided meanwhile, and begin the one after it at once (or refresh
        the begun one when it has waited too long). Partitions commit independently."""
        self._decide(writer)
        events = TopicPartition(self._topics.events.name, writer.partition)
        if writer.committing is None and writer.decided.records:
            batch, writer.decided = writer.decided, Batch()
            batch.seal(writer.state)
            producer, begun = None, None
            if transactions.needs_transaction(batch):
                producer, (begun, writer.begun) = writer.take_turn(), (writer.begun, None)
            writer.committing = asyncio.create_task(self._commit(writer, batch, producer, begun))
            self._decide(writer)  # what MAX_BATCH left over, ahead of the next transaction
        if writer.begun is None:
            transactions.begin_next(writer, events, now)
        elif writer.committing is None and now - writer.begun_at >= self._refresh_after_s:
            transactions.refresh(writer, events, now)

    def _decide(self, writer: Writer) -> None:
        """Decide the fetched commands into the next batch, up to MAX_BATCH of them, and
        refresh the timers of what they changed."""
        room = MAX_BATCH - len(writer.decided.records)
        records, writer.waiting = writer.waiting[:room], writer.waiting[room:]
        keys = self._decisions.decide(writer.decided, writer.state, writer.partition, records)
        for key in keys:
            self._refresh_timers(writer, key)

    def _refresh_timers(self, writer: Writer, key: str) -> None:
        state = writer.state.states.get(key)
        timers = [] if state is None else self._aggregate.timers(key, state)
        writer.timers.refresh(key, timers)

    def _until_due(self, ticks: float) -> float | None:
        """Seconds until the earliest timer of any partition is due, or a begun transaction
        is to be refreshed (None: neither)."""
        due = [at for w in self._writers.values() if (at := w.timers.next_at()) is not None]
        refresh = [w.begun_at + self._refresh_after_s - ticks for w in self._writers.values()]
        if due:
            refresh.append((min(due) - self._clock()).total_seconds())
        return max(0.0, min(refresh)) if refresh else None

    def _fire(self, writer: Writer, now: datetime) -> None:
        """Queue the commands of the timers due: decided like any other, in order."""
        for key, timer in writer.timers.due(now):
            envelope = Envelope[Any](
                key=key,
                correlation_id=f"timer-{timer.id}",
                idempotency_key=f"timer:{timer.id}:{timer.at.isoformat()}",
                actor="timer",
                data=timer.command,
            )
            writer.waiting.append(Timed(envelope.to_bytes()))
            log.info(
                "decider.timer_fired",
                key=key,
                timer=timer.id,
                late_s=(now - timer.at).total_seconds(),
            )

    async def _commit(
        self,
        writer: Writer,
        batch: Batch,
        producer: AIOKafkaProducer | None,
        begun: asyncio.Task[TransactionContext] | None,
    ) -> None:
        """Commit the batch, hand its events to this process's view, then answer."""
        appended = await transactions.commit(writer, batch, self._group, producer, begun)
        if self._snapshots is not None:
            last = batch.last_fetched()
            self._snapshots.committed(
                writer.partition,
                batch.states,
                None if last is None else last.offset + 1,
                [offset for _, offset in appended],
                writer.state.memo,
                writer.decided.remembered(),
            )
        if appended:
            offsets = (appended[0][1], appended[-1][1])
            events = [envelope for envelope, _ in appended]
            await self._fold_here(writer.partition, offsets, events, batch.states)
        assert self._replies is not None, "replies are sent while the writers run"
        for outcome in batch.outcomes:
            await self._replies.send(outcome, writer.state.memo)

    async def _acquire(self, p: int) -> None:
        """Fence p's previous writer, fold p's state, then resume p's commands from its
        checkpoint (`acquisitions`: run beside the loop)."""
        assert self._consumer is not None, "partitions are assigned while the writers run"
        base = f"{self._group}.p{p}"
        pair = (
            self._clients.producer(transactional_id=base),
            self._clients.producer(transactional_id=f"{base}.b"),
        )
        try:
            for producer in pair:
                await producer.start()  # init_transactions: fences the previous writer of p
            state, folded = await self._load(p)
            tp = TopicPartition(self._topics.commands.name, p)
            start = max(state.consumed, await self._consumer.committed(tp) or 0)
            await self._acquisitions.held(p)  # p is ours now: taken with no await below
        except BaseException:
            for producer in pair:  # a producer never started stops at once
                await producer.stop()
            raise
        self._consumer.seek(tp, start)
        self._consumer.resume(tp)
        address = local_sockets.owner(self._bootstrap, self._topics.commands.name, p)
        inbox = local_sockets.Inbox(address, functools.partial(self._take_handed, p))
        self._writers[p] = writer = Writer(p, pair, state, inbox)
        for key in state.states:
            self._refresh_timers(writer, key)
        self._listen(writer, asyncio.get_running_loop().time())
        log.info(
            "decider.partition_acquired",
            aggregate=self._aggregate.name,
            partition=p,
            states=len(state.states),
            offset=start,
            folded=folded,
        )

    async def _release(self, partitions: list[int]) -> None:
        """Let the transaction in flight end (commit or abort), then give the partition up;
        its undecided commands are the next owner's, from the committed offset."""
        for p in partitions:
            writer = self._writers.pop(p, None)
            if writer is not None:
                if self._same_process is not None:
                    self._same_process.close(writer.inbox.address)
                writer.inbox.close()  # what it holds undecided, its gateways send to the topic
                if writer.committing is not None:
                    await asyncio.gather(writer.committing, return_exceptions=True)
                if writer.begun is not None:  # empty: the next owner's fencing aborts it
                    writer.begun.cancel()
                    await asyncio.gather(writer.begun, return_exceptions=True)
                for producer in writer.producers:
                    await producer.stop()
            if self._snapshots is not None:
                self._snapshots.forget(p)

    async def _load(self, partition: int) -> tuple[PartitionState, int]:
        """Fold event partition p from its last sound snapshot (else offset 0) to its last
        committed record; returns the state and how many events were folded. An event that
        cannot be read or folded is skipped, logged and counted (docs/architecture.md,
        "Parked messages"), never a crash loop."""
        state = PartitionState(self._aggregate, memo_window_s=self._memo_window_s)
        tp = TopicPartition(self._topics.events.name, partition)
        consumer = self._clients.reader()
        await consumer.start()
        folded = 0
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            snapshot = None
            if self._snapshots is not None:
                snapshot = await self._snapshots.load(partition, end)
            if snapshot is None:
                await consumer.seek_to_beginning(tp)
            else:
                state.states, state.consumed = snapshot.states, snapshot.consumed
                state.memo.restore(snapshot.memo)
                consumer.seek(tp, snapshot.next_offset)
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    state.consumed = max(state.consumed, transactions.checkpoint_of(record.headers))
                    self._fold(state, partition, record)
                    folded += 1
                state.memo.expire(self._clock())  # a long fold keeps only a window's keys
            state.memo.expire(self._clock())
        finally:
            await consumer.stop()
        if self._snapshots is not None:
            self._snapshots.track(partition, state.states, state.consumed, end, state.memo, folded)
        return state, folded

    def _fold(
        self, state: PartitionState, partition: int, record: ConsumerRecord[Any, Any]
    ) -> None:
        try:
            event = self._aggregate.events.decode(record.value)
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
            parked.PARKED[self._aggregate.name, "unfoldable_event"] += 1


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, writers: Writers) -> None:
        self._writers = writers

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._writers._assigned = None  # not ready until the group has assigned again
        partitions = [tp.partition for tp in revoked]
        self._writers._acquisitions.revoke(partitions)  # held back; cancelled if not given back
        await self._writers._release(partitions)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Record the assignment and start acquiring what is new, without waiting for it (a
        long fold here would cost the group membership: `acquisitions`). aiokafka logs and
        swallows a listener's exception; hand it to the run loop instead."""
        writers = self._writers
        try:
            new = [tp for tp in assigned if tp.partition not in writers._writers]
            assert writers._consumer is not None, "partitions are assigned while the writers run"
            writers._consumer.pause(*new)  # resumed by `_acquire`, at p's checkpoint
            await writers._acquisitions.assign(tp.partition for tp in new)
        except Exception as error:  # noqa: BLE001 - re-raised by the run loop
            writers.rebalance_error = error
        else:
            writers._assigned = {tp.partition for tp in assigned}

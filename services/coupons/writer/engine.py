"""The single-writer engine: the one writer of each partition of an aggregate's command topic.

For every batch of commands on partition p it decides each one against the state folded from
event partition p (`batch`), then appends the events to event partition p in ONE Kafka
transaction (`transactions`). A crash anywhere before the commit leaves no trace; after it,
everything is there. On assignment, p's two transactional producers fence any zombie writer
of p, then the state and the consumed offset are loaded from p's last snapshot and the events
after it folded (`fold`, `snapshots`; from offset 0 without one), in a task beside the loop, not in
the group's rebalance callback (`acquisitions`): p's commands wait, paused, until then.

A batch takes commands from the commands topic, and from gateways of this host that hand
them over directly, by a local socket or in memory (`intake`). The socket is opened once p's
state is loaded and closed first when p is given up.

Commands keep being fetched, and decided, while a partition's transaction is in flight; the
next transaction takes all of them at once, already decided and encoded, so it only sends and
commits. Batches grow with the load instead of waiting a turn.

After a commit, the committed events and the states they changed are handed to this process's
view (`fold_here`) before the replies (`replies`), so a command answered here need not wait
for the view to fetch its events.

No transaction is waited for longer than `transactions.STUCK_AFTER_S` (as Kafka's Java
client bounds a commit by `max.block.ms`, KAFKA-7763). After an unclean restart of the
broker, aiokafka's producer once never finished one (`make chaos`): its partition's commands
waited forever, and so did the rebalance giving the partition up. Now the writers crash
(`TransactionStuck`) and their restart fences the stuck producers, which settles the
transaction at the broker (aborted, or its commit completed) before the partition is folded
again; giving a partition up waits no longer either (`transactions.within`).
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.producer.producer import TransactionContext
from aiokafka.structs import ConsumerRecord

from contracts.envelope import Envelope
from contracts.replies import Reply
from contracts.topics import Topics
from projections.offsets import raise_rebalance_error
from services.coupons.bus import local_sockets
from services.coupons.bus.same_process import SameProcess
from services.coupons.domain.idempotency import RETENTION_S
from services.coupons.writer import fold, kafka_private, transactions
from services.coupons.writer.acquisitions import Acquisitions
from services.coupons.writer.aggregate import Aggregate
from services.coupons.writer.batch import (
    MAX_BATCH,
    Batch,
    Decisions,
    PartitionState,
    Timed,
)
from services.coupons.writer.clients import Clients, KafkaClients
from services.coupons.writer.intake import Intake
from services.coupons.writer.replies import Replies
from services.coupons.writer.snapshots import Snapshots
from services.coupons.writer.transactions import Writer

log = structlog.get_logger(__name__)

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
        transactional ids (`<commands topic>.<role>`; `...p<p>`, `...p<p>.b`, `...p<p>.c`).
        `clients` and `clock` are Kafka's and the wall clock unless a test passes its fakes.
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
        self._snapshots = snapshots
        self._memo_window_s = memo_window_s
        self._intake = Intake(self._writers, self._step, same_process)
        # a begun transaction unused this long is refreshed, well before the broker's timeout
        self._refresh_after_s = self._clients.transaction_timeout_s / 3
        self._stuck_after_s = min(transactions.STUCK_AFTER_S, self._clients.transaction_timeout_s)
        self._acquisitions = Acquisitions(self._acquire)

    @property
    def ready(self) -> bool:
        """It has joined its group and holds (has folded) every partition assigned to it."""
        return self._assigned is not None and self._assigned <= self._writers.keys()

    async def run(self) -> None:
        self.rebalance_error = None  # a restart after a failed acquisition tries afresh
        self._intake.failed = None
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
                committing = [w.committing for w in self._writers.values() if w.committing]
                acquiring = self._acquisitions.waits()
                wakes: list[asyncio.Future[Any]] = [
                    fetching,
                    self._intake.woken(),
                    *committing,
                    *acquiring,
                ]
                done, _ = await asyncio.wait(
                    wakes, timeout=self._until_due(loop.time()), return_when=asyncio.FIRST_COMPLETED
                )
                if self._intake.failed is not None:
                    raise self._intake.failed
                if fetching in done:
                    batches, fetching = fetching.result(), None
                    raise_rebalance_error(self)
                    self._queue(consumer, batches)
                self._acquisitions.finished()
                now, ticks = self._clock(), loop.time()
                for writer in list(self._writers.values()):
                    self._intake.listen(writer, ticks)
                    self._fire(writer, now)
                    self._advance(writer, ticks)
        finally:
            if fetching is not None:
                fetching.cancel()
                await asyncio.gather(fetching, return_exceptions=True)
            await self._acquisitions.cancel()
            await consumer.stop()
            await self._release(list(self._writers))
            stop = asyncio.create_task(producer.stop())
            until = asyncio.get_running_loop().time() + self._stuck_after_s
            await transactions.within("the replies' producer", until, stop)
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

    def _advance(self, writer: Writer, now: float) -> None:
        """Raise what failed (a failed transaction crashes the writer: it resumes from the
        log; so does one that could not begin, or be refreshed), then `_step`."""
        if writer.committing is not None and writer.committing.done():
            finished, writer.committing = writer.committing, None
            finished.result()
        elif writer.committing is not None and now - writer.committing_at > self._stuck_after_s:
            raise transactions.TransactionStuck(
                f"partition {writer.partition}'s transaction has not ended in "
                f"{now - writer.committing_at:.0f} s"
            )
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
            writer.committing_at = now
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
        """Seconds until the earliest timer of any partition is due, a begun transaction is to
        be refreshed, or one in flight would be stuck (None: none of them)."""
        due = [at for w in self._writers.values() if (at := w.timers.next_at()) is not None]
        refresh = [w.begun_at + self._refresh_after_s - ticks for w in self._writers.values()]
        refresh += [
            w.committing_at + self._stuck_after_s - ticks
            for w in self._writers.values()
            if w.committing is not None
        ]
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
        ids = transactions.transactional_ids(f"{self._group}.p{p}")
        producers = [self._clients.producer(transactional_id=tid) for tid in ids]
        try:
            for producer in producers:
                await producer.start()  # init_transactions: fences the previous writer of p
            state, folded = await self._load(p)
            tp = TopicPartition(self._topics.commands.name, p)
            start = max(state.consumed, await self._consumer.committed(tp) or 0)
            await self._acquisitions.held(p)  # p is ours now: taken with no await below
        except BaseException:
            for producer in producers:  # a producer never started stops at once
                await producer.stop()
            raise
        self._consumer.seek(tp, start)
        self._consumer.resume(tp)
        inbox = self._intake.inbox(self._bootstrap, self._topics.commands.name, p)
        self._writers[p] = writer = Writer(p, producers, state, inbox)
        for key in state.states:
            self._refresh_timers(writer, key)
        self._intake.listen(writer, asyncio.get_running_loop().time())
        log.info(
            "decider.partition_acquired",
            aggregate=self._aggregate.name,
            partition=p,
            states=len(state.states),
            offset=start,
            folded=folded,
        )

    async def _release(self, partitions: list[int]) -> None:
        """Give the partitions up side by side (`_release_one`): one whose producers are stuck
        then holds a rebalance for its own bounds, not for theirs times the partitions."""
        await asyncio.gather(*(self._release_one(p) for p in partitions))

    async def _release_one(self, p: int) -> None:
        """Let the transaction in flight end (commit or abort), then give the partition up;
        its undecided commands are the next owner's, from the committed offset. All of it is
        waited for at most `transactions.STUCK_AFTER_S` (`transactions.within`): a bound for
        each wait let a stuck transaction, then its producers' stop, hold a rebalance for
        twice the bound (`make chaos`)."""
        writer = self._writers.pop(p, None)
        if writer is not None:
            self._intake.close(writer)
            until = asyncio.get_running_loop().time() + self._stuck_after_s
            if writer.committing is not None:
                await transactions.within(f"p{p}'s transaction", until, writer.committing)
            if writer.begun is not None:  # empty: the next owner's fencing aborts it
                writer.begun.cancel()
                await transactions.within(f"p{p}'s next transaction", until, writer.begun)
            stops = [asyncio.create_task(producer.stop()) for producer in writer.producers]
            await transactions.within(f"p{p}'s producers", until, *stops)
        if self._snapshots is not None:
            self._snapshots.forget(p)

    async def _load(self, partition: int) -> tuple[PartitionState, int]:
        state, folded, end = await fold.partition(
            self._aggregate,
            self._clients.reader(),
            TopicPartition(self._topics.events.name, partition),
            self._snapshots,
            self._memo_window_s,
            self._clock,
        )
        if self._snapshots is not None:
            self._snapshots.track(partition, state.states, state.consumed, end, state.memo, folded)
        return state, folded


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

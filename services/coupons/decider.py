"""The campaign decider: the single writer of each command partition.

For every batch of commands on partition p it decides each one against the state folded from
event partition p, then appends the events (to event partition p) in ONE Kafka transaction,
each event carrying the batch's consumed command offset in its `consumed` header. A crash
anywhere before the commit leaves no trace; after it, everything is there. On assignment,
two transactional producers with the ids `...decider.p{p}` and `...decider.p{p}.b` fence any
zombie writer of p, then the state and the consumed offset are rebuilt from the log.

The two take turns, one transaction at a time: the broker writes a transaction's commit markers
after answering its commit, and refuses the same producer's next transaction until it has
(CONCURRENT_TRANSACTIONS, retried after a backoff; back-to-back transactions hit it one and a
half times each on an idle broker, measured). The other producer's next transaction is not
held up by them; it still sends nothing before the one before it has committed. It is begun,
and the event partition added to it, as soon as a command decided meanwhile has something to
append: the add-partition round trip then overlaps the transaction in flight instead of
lengthening the next one (a transaction is otherwise three round trips in a row: add the
partition, send, commit). aiokafka adds a partition only with a record's send, so this calls
its transaction manager directly (`_txn_manager.maybe_add_partition_to_txn`). A decider that
crashes with such a transaction open leaves nothing in it; its next owner's fencing aborts it.

A batch takes commands from two places: the commands topic, and the local socket at which the
owner of p listens for gateways of its own host (`local_sockets`), who send their commands
there instead of through the broker. A command handed over that way has no offset, so it
moves no checkpoint; one lost with its decider is appended to the topic by its gateway after
a while, and decided then (a second delivery of one decided already is a retry, answered from
the memo). The socket is opened once p's state is loaded and closed first when p is given up.

The checkpoint rides on the events, not on the consumer group (`send_offsets_to_transaction`),
because the group costs each transaction two more sequential round trips to the coordinator and
commit markers on one more partition. A batch that appends no event (every command a retry, or
unreadable) has nothing to carry it, so only then is its offset committed through the group;
the decider resumes from whichever of the two is further.

Commands keep being fetched, and decided, while a partition's transaction is in flight; the
next transaction takes all of them at once, already decided and encoded, so it only sends and
commits. Batches grow with the load instead of waiting a turn. Deciding ahead is safe: a
transaction that fails crashes the decider, which rebuilds its state from the log.

The replies follow the commit, outside the transaction: a reply then never waits for commit
markers, and the transaction has one partition less to add. A reply to a command sent by this
process's own gateway is handed to it in memory, and one to a gateway of another process of
this host goes through a local socket (`local_sockets`), each saving two round trips to the
broker; the others go through the replies topic. A crash between the commit and a reply
loses only the reply; the caller's retry with the same idempotency key is answered from the
memo. The committed events, and the campaigns as they stand
after them, are handed to this process's campaign view before the replies, so a redemption
answered here need not wait for the view to fetch its events.
"""

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.producer.producer import TransactionContext
from aiokafka.structs import ConsumerRecord

from contracts.codec import COMMANDS, EVENTS, MalformedMessage
from contracts.commands import Command
from contracts.envelope import Envelope
from contracts.events import CodeDistributed, CodeRedeemed, CommandRejected, Event
from contracts.public import CouponIssued
from contracts.reasons import Reason
from contracts.replies import EventPosition, Reply
from contracts.topics import Topics
from projections import parked
from services.coupons.bus import kafka, local_sockets
from services.coupons.bus.dead_letters import dead_letter_headers, origin_headers
from services.coupons.domain import campaign as aggregate
from services.coupons.domain import summary
from services.coupons.domain.idempotency import KeyReused, Memo, request_hash

log = structlog.get_logger(__name__)

MAX_BATCH = 500  # commands per transaction
REBIND_S = 1.0  # how often a writer whose socket name is still held elsewhere tries again
CHECKPOINT = "consumed"  # event header: the next command offset after the event's batch


@dataclass
class PartitionState:
    """Everything the writer of one partition knows, folded from its event partition."""

    campaigns: dict[str, aggregate.Campaign] = field(default_factory=dict)
    memo: Memo = field(default_factory=Memo)
    consumed: int = 0  # the next command offset to decide, as the events checkpointed it

    def apply(self, event: Envelope[Event], position: EventPosition | None) -> None:
        """Fold `event` in; the memo first, so a command whose event cannot be folded (a
        poison event, skipped) is still answered as decided when it is retried."""
        if position is not None:
            self.memo.replay(event, position)
        folded = aggregate.evolve(self.campaigns.get(event.key), event.data, event.occurred_at)
        if folded is not None:
            self.campaigns[event.key] = folded


@dataclass
class Outcome:
    command: Envelope[Command]
    duplicate: bool = False
    key_reused: bool = False  # refused, appending nothing
    decided_at: datetime | None = None
    redeemed: CodeRedeemed | None = None
    reply_to: bytes | None = None  # the sender's local address, if it gave one


@dataclass(frozen=True)
class Send:
    """One record of a transaction, encoded when its command was decided."""

    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    event: Envelope[Event] | None = None  # an appended event: placed in the memo once acked


@dataclass(frozen=True)
class Handed:
    """A command handed over through the local socket: it is on no topic, so has no offset."""

    value: bytes
    reply_to: bytes


Received: TypeAlias = ConsumerRecord[Any, Any] | Handed


@dataclass
class Batch:
    """Commands decided, in order, waiting for (or in) their transaction."""

    records: list[Received] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    campaigns: dict[str, aggregate.Campaign] = field(default_factory=dict)
    """The campaigns its events changed, as they stand after them: set when it is sealed."""


@dataclass
class Writer:
    partition: int
    producers: tuple[AIOKafkaProducer, AIOKafkaProducer]  # they take turns
    state: PartitionState
    inbox: local_sockets.Inbox
    waiting: list[Received] = field(default_factory=list)  # fetched or handed, undecided
    decided: Batch = field(default_factory=Batch)  # the next transaction's
    committing: asyncio.Task[None] | None = None  # the batch whose transaction is in flight
    transactions: int = 0  # begun so far
    bound_at: float = 0.0  # when the writer last tried to open its inbox
    begun: asyncio.Task[TransactionContext] | None = None  # the next transaction, begun early

    def next_turn(self) -> AIOKafkaProducer:
        """The producer of the next transaction: not the one whose markers may be pending."""
        return self.producers[(self.transactions + 1) % 2]

    def take_turn(self) -> AIOKafkaProducer:
        """The next transaction's producer, whose turn it now is."""
        producer = self.next_turn()
        self.transactions += 1
        return producer


TakeCommitted = Callable[
    [int, tuple[int, int], Sequence[Envelope[Event]], Mapping[str, aggregate.Campaign]],
    Awaitable[None],
]
"""Hand a committed transaction to the campaign view: partition, (first, last) offsets, its
events, and the campaigns they changed as they stand after them."""


async def _nowhere(*_: Any) -> None:
    pass


class Decider:
    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        partitions: int,
        answer_here: Callable[[Reply], bool] = lambda _: False,
        fold_here: TakeCommitted = _nowhere,
    ) -> None:
        """`answer_here` resolves a wait of this process's gateway for a reply, if it has one:
        then the reply is not sent to the replies topic. `fold_here` takes each committed
        transaction into this process's campaign view."""
        self._bootstrap = bootstrap
        self._answer_here = answer_here
        self._fold_here = fold_here
        self._topics = topics
        self._partitions = partitions
        self._group = f"{topics.commands.name}.decider"
        self._writers: dict[int, Writer] = {}
        self._rebalance_error: Exception | None = None
        self._assigned: set[int] | None = None  # None until the group assigned us partitions
        self._replies: AIOKafkaProducer | None = None  # one per run: a restart makes another
        self._outbox: local_sockets.Outbox | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._handed: asyncio.Future[None] | None = None  # resolved when a command is handed

    async def run(self) -> None:
        self._rebalance_error = None  # a restart after a failed acquisition tries afresh
        self._assigned = None
        self._consumer = consumer = kafka.reader(self._bootstrap, group_id=self._group)
        self._replies = kafka.producer(self._bootstrap)
        self._outbox = local_sockets.Outbox()
        await self._replies.start()
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
                wakes: list[asyncio.Future[Any]] = [fetching, self._handed, *committing]
                done, _ = await asyncio.wait(wakes, return_when=asyncio.FIRST_COMPLETED)
                if fetching in done:
                    batches, fetching = fetching.result(), None
                    if self._rebalance_error is not None:
                        raise self._rebalance_error
                    self._queue(consumer, batches)
                for writer in list(self._writers.values()):
                    self._listen(writer, loop.time())
                    self._advance(writer)
        finally:
            if fetching is not None:
                fetching.cancel()
                await asyncio.gather(fetching, return_exceptions=True)
            await consumer.stop()
            await self._release(list(self._writers))
            await self._replies.stop()
            self._outbox.close()

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
        if self._handed is not None and not self._handed.done():
            self._handed.set_result(None)

    def _listen(self, writer: Writer, now: float) -> None:
        """Open the writer's inbox if another process still held its name last time (the
        partition's previous owner, giving it up)."""
        if not writer.inbox.is_open and now - writer.bound_at >= REBIND_S:
            writer.bound_at = now
            writer.inbox.open()

    def _advance(self, writer: Writer) -> None:
        """Decide what was fetched; once the transaction in flight has committed, start the
        next one with everything decided meanwhile. Partitions commit independently."""
        if writer.committing is not None and writer.committing.done():
            finished, writer.committing = writer.committing, None
            finished.result()  # a failed transaction crashes the decider: it resumes from the log
        self._decide(writer)
        if writer.committing is not None and writer.decided.sends and writer.begun is None:
            # the next batch will need a transaction: begin it while this one commits
            writer.begun = asyncio.create_task(self._begin(writer.partition, writer.next_turn()))
        if writer.committing is None and writer.decided.records:
            batch, writer.decided = writer.decided, Batch()
            changed = {send.event.key for send in batch.sends if send.event is not None}
            campaigns = writer.state.campaigns
            batch.campaigns = {key: campaigns[key] for key in changed if key in campaigns}
            writer.committing = asyncio.create_task(self._commit(writer, batch))
            self._decide(writer)  # what MAX_BATCH left over, ahead of the next transaction

    @property
    def ready(self) -> bool:
        """It has joined its group and holds (has folded) every partition assigned to it."""
        return self._assigned is not None and self._assigned <= self._writers.keys()

    async def _acquire(self, partitions: list[int]) -> None:
        assert self._consumer is not None, "partitions are assigned while the decider runs"
        for p in partitions:
            base = f"{self._topics.commands.name}.decider.p{p}"
            pair = (
                kafka.producer(self._bootstrap, transactional_id=base),
                kafka.producer(self._bootstrap, transactional_id=f"{base}.b"),
            )
            try:
                for producer in pair:
                    await producer.start()  # init_transactions: fences the previous writer of p
                state = await self._load(p)
                tp = TopicPartition(self._topics.commands.name, p)
                start = max(state.consumed, await self._consumer.committed(tp) or 0)
            except BaseException:
                for producer in pair:  # a producer never started stops at once
                    await producer.stop()
                raise
            self._consumer.seek(tp, start)
            address = local_sockets.owner(self._bootstrap, self._topics.commands.name, p)
            inbox = local_sockets.Inbox(address, functools.partial(self._take_handed, p))
            self._writers[p] = writer = Writer(p, pair, state, inbox)
            self._listen(writer, asyncio.get_running_loop().time())
            log.info(
                "decider.partition_acquired",
                partition=p,
                campaigns=len(state.campaigns),
                offset=start,
            )

    async def _release(self, partitions: list[int]) -> None:
        """Let the transaction in flight end (commit or abort), then give the partition up;
        its undecided commands are the next owner's, from the committed offset."""
        for p in partitions:
            writer = self._writers.pop(p, None)
            if writer is not None:
                writer.inbox.close()  # what it holds undecided, its gateways send to the topic
                if writer.committing is not None:
                    await asyncio.gather(writer.committing, return_exceptions=True)
                if writer.begun is not None:  # empty: the next owner's fencing aborts it
                    writer.begun.cancel()
                    await asyncio.gather(writer.begun, return_exceptions=True)
                for producer in writer.producers:
                    await producer.stop()

    async def _load(self, partition: int) -> PartitionState:
        """Fold event partition p from offset 0 to its last committed record."""
        state = PartitionState()
        tp = TopicPartition(self._topics.events.name, partition)
        consumer = kafka.reader(self._bootstrap)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    state.consumed = max(state.consumed, _checkpoint(record))
                    try:
                        event = EVENTS.decode(record.value)
                    except MalformedMessage as error:
                        log.error(
                            "decider.unreadable_event", offset=record.offset, reason=error.reason
                        )
                        continue
                    position = EventPosition(partition=partition, offset=record.offset)
                    try:
                        state.apply(event, position)
                    except Exception as error:  # noqa: BLE001 - skipped, counted, never a crash loop
                        log.error(
                            "decider.unfoldable_event",
                            partition=partition,
                            offset=record.offset,
                            type=event.type,
                            error=repr(error),
                        )
                        parked.PARKED["decider", "unfoldable_event"] += 1
        finally:
            await consumer.stop()
        return state

    def _decide(self, writer: Writer) -> None:
        """Decide the fetched commands into the next batch, up to MAX_BATCH of them: each
        against the state the ones before it left, so the state runs ahead of the log."""
        batch = writer.decided
        room = MAX_BATCH - len(batch.records)
        records, writer.waiting = writer.waiting[:room], writer.waiting[room:]
        for record in records:
            batch.records.append(record)
            command = self._read(record, batch, writer.partition)
            if command is None:
                continue
            outcome = self._decide_one(writer, record, command, batch)
            if isinstance(record, Handed):
                outcome.reply_to = record.reply_to
            else:
                outcome.reply_to = kafka.header(record.headers, local_sockets.HEADER)
            batch.outcomes.append(outcome)

    def _decide_one(
        self, writer: Writer, record: Received, command: Envelope[Command], batch: Batch
    ) -> Outcome:
        state, outcome = writer.state, Outcome(command)
        digest = request_hash(command.data)  # once: it serialises the whole command
        try:
            if state.memo.recall(command, digest) is not None:
                outcome.duplicate = True  # a retry: answered from the memo
                return outcome
        except KeyReused:
            outcome.key_reused = True  # answered once the first request's events are placed
            return outcome
        now = datetime.now(UTC)  # the decision's time: checked against and recorded
        campaign = state.campaigns.get(command.key)
        try:
            events = aggregate.decide(campaign, command.data, now)
            envelopes = [_event_envelope(command, event, now, digest) for event in events]
            folded = aggregate.fold(campaign, [(e.data, now) for e in envelopes])
        except Exception as error:  # noqa: BLE001 - parked and refused, never a dead partition
            events, folded = [_unprocessable(command, error)], campaign
            envelopes = [_event_envelope(command, events[0], now, digest)]
            reason = Reason.UNPROCESSABLE.value
            self._park(record, batch, writer.partition, reason, repr(error), handed_too=True)
            parked.PARKED["decider", reason] += 1
        state.memo.begin(command, digest, events)
        outcome.decided_at = now
        if folded is not None:
            state.campaigns[command.key] = folded
        for envelope in envelopes:
            event = envelope.data
            batch.sends.append(
                Send(
                    self._topics.events.name,
                    envelope.to_bytes(),
                    envelope.key.encode(),
                    [("type", envelope.type.encode())],
                    partition=writer.partition,
                    event=envelope,
                )
            )
            if isinstance(event, CodeDistributed):
                batch.sends.append(self._announce(state.campaigns[command.key], envelope, event))
            elif isinstance(event, CodeRedeemed):
                outcome.redeemed = event
        log.info(
            "decider.decided",
            correlation_id=command.correlation_id,
            command=command.data.type,
            events=[e.type for e in events],
        )
        return outcome

    async def _begin(self, partition: int, producer: AIOKafkaProducer) -> TransactionContext:
        """Begin `producer`'s transaction, and add the event partition to it, ahead of its
        first send."""
        transaction = producer.transaction()
        await transaction.__aenter__()
        tp = TopicPartition(self._topics.events.name, partition)
        producer._txn_manager.maybe_add_partition_to_txn(tp)
        return transaction

    async def _commit(self, writer: Writer, batch: Batch) -> None:
        """Send the batch in one transaction, every event carrying the consumed offset; then
        place the events in the memo and answer."""
        memo = writer.state.memo
        fetched = (r for r in reversed(batch.records) if isinstance(r, ConsumerRecord))
        last = next(fetched, None)  # the batch's last record of the topic, if any
        checkpoint = [] if last is None else [(CHECKPOINT, str(last.offset + 1).encode())]
        appended: list[tuple[Envelope[Event], asyncio.Future[Any]]] = []
        if batch.sends or last is not None:  # else every command was handed over, a retry
            producer = writer.take_turn()
            begun, writer.begun = writer.begun, None
            async with contextlib.AsyncExitStack() as transaction:
                if begun is None:
                    await transaction.enter_async_context(producer.transaction())
                else:  # by `_begin`, on this same producer: commit or abort it on the way out
                    transaction.push_async_exit(await begun)
                for send in batch.sends:
                    headers = send.headers if send.event is None else [*send.headers, *checkpoint]
                    acked = await producer.send(
                        send.topic,
                        send.value,
                        key=send.key,
                        partition=send.partition,
                        headers=headers,
                    )
                    if send.event is not None:
                        appended.append((send.event, acked))
                if last is not None and not appended:  # no event carries the checkpoint
                    consumed = {TopicPartition(last.topic, last.partition): last.offset + 1}
                    await producer.send_offsets_to_transaction(consumed, self._group)
        offsets = []
        for envelope, acked in appended:
            metadata = await acked  # resolved: the commit flushed every append
            memo.place(
                envelope, EventPosition(partition=metadata.partition, offset=metadata.offset)
            )
            offsets.append(metadata.offset)
        if appended:
            events = [envelope for envelope, _ in appended]
            await self._fold_here(
                writer.partition, (offsets[0], offsets[-1]), events, batch.campaigns
            )
        for outcome in batch.outcomes:
            await self._reply(outcome, memo)

    def _read(self, record: Received, batch: Batch, partition: int) -> Envelope[Command] | None:
        """The command in `record`, or None once it is queued for the dead-letter topic (or,
        handed over, dropped: its gateway then appends it to the topic, where it is parked)."""
        try:
            command = COMMANDS.decode(record.value)
        except MalformedMessage as error:
            self._park(record, batch, partition, error.reason, error.detail)
            return None
        if kafka.partition_for(command.key, self._partitions) != partition:
            detail = f"key {command.key!r} belongs to another partition"
            self._park(record, batch, partition, "wrong_partition", detail)
            return None
        if command.idempotency_key is None:  # every decision is remembered under some key
            command = command.model_copy(update={"idempotency_key": str(command.id)})
        return command

    def _park(
        self,
        record: Received,
        batch: Batch,
        partition: int,
        reason: str,
        detail: str,
        *,
        handed_too: bool = False,
    ) -> None:
        """Queue a fetched record for the dead-letter topic. An unreadable handed one is
        dropped (its gateway, unanswered, appends it to the topic, where it is parked); one
        refused as unprocessable (`handed_too`) is answered, so it is parked here, with no
        offset."""
        if isinstance(record, Handed):
            if not handed_too:
                log.error("decider.handed_command_dropped", reason=reason, detail=detail)
                return
            topic = self._topics.commands.name
            headers = origin_headers(topic, partition, None, reason, detail)
            batch.sends.append(Send(self._topics.dead_letters.name, record.value, None, headers))
            return
        headers = dead_letter_headers(record, reason, detail)
        batch.sends.append(Send(self._topics.dead_letters.name, record.value, record.key, headers))

    def _announce(
        self, campaign: aggregate.Campaign, envelope: Envelope[Event], event: CodeDistributed
    ) -> Send:
        """Tell sequence engines, in the same transaction as the event it announces."""
        public = Envelope[CouponIssued](
            key=event.contact_id,
            occurred_at=envelope.occurred_at,
            causation_id=envelope.id,
            correlation_id=envelope.correlation_id,
            actor=envelope.actor,
            data=summary.issued(campaign, event),
        )
        return Send(
            self._topics.issued.name,
            public.to_bytes(),
            event.contact_id.encode(),
            [("type", public.type.encode())],
        )

    async def _reply(self, outcome: Outcome, memo: Memo) -> None:
        """Queue the reply; it is sent while the next batch is decided."""
        assert self._replies is not None, "replies are sent while the decider runs"
        assert self._outbox is not None, "replies are sent while the decider runs"
        command = outcome.command
        if outcome.key_reused:
            reply = _refusal(command, Reason.IDEMPOTENCY_KEY_REUSED, memo)
        else:
            reply = _from_memo(command, memo, duplicate=outcome.duplicate)
        if outcome.decided_at is not None and reply.outcome == "accepted":
            reply = reply.model_copy(
                update={"decided_at": outcome.decided_at, "redeemed": outcome.redeemed}
            )
        if self._answer_here(reply):
            return
        envelope = Envelope[Reply](
            key=str(command.id),
            causation_id=command.id,
            correlation_id=command.correlation_id,
            idempotency_key=command.idempotency_key,
            actor=command.actor,
            data=reply,
        )
        encoded = envelope.to_bytes()
        if outcome.reply_to is not None and self._outbox.send(outcome.reply_to, encoded):
            return
        await self._replies.send(self._topics.replies.name, encoded, key=str(command.id).encode())


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, decider: Decider) -> None:
        self._decider = decider

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._decider._assigned = None  # not ready until the group has assigned again
        await self._decider._release([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # aiokafka logs and swallows a listener's exception; hand it to the run loop instead,
        # so a partition that could not be acquired crashes the decider (and restarts it).
        try:
            await self._decider._acquire(sorted(tp.partition for tp in assigned))
        except Exception as error:  # noqa: BLE001 - re-raised by the run loop
            self._decider._rebalance_error = error
        else:
            self._decider._assigned = {tp.partition for tp in assigned}


def _checkpoint(record: ConsumerRecord[Any, Any]) -> int:
    """The command offset an event's transaction consumed up to (0 if it does not say)."""
    return int(kafka.header(record.headers, CHECKPOINT) or 0)


def _event_envelope(
    command: Envelope[Command], event: Event, now: datetime, digest: str
) -> Envelope[Event]:
    return Envelope[Event](
        key=command.key,
        occurred_at=now,
        causation_id=command.id,
        correlation_id=command.correlation_id,
        idempotency_key=command.idempotency_key,
        request_hash=digest,
        actor=command.actor,
        data=event,
    )


def _unprocessable(command: Envelope[Command], error: Exception) -> CommandRejected:
    """The refusal of a command the decider failed on: its campaign's other commands go on."""
    detail = f"the decider could not process this command ({type(error).__name__}); it is parked"
    data = command.data
    return CommandRejected(
        campaign_id=data.campaign_id,
        command_type=data.type,
        reason=Reason.UNPROCESSABLE,
        detail=detail,
    )


def _refusal(command: Envelope[Command], reason: Reason, memo: Memo) -> Reply:
    """A refusal of a reused key, saying where the key's first request put its events: a code
    batch resumed after a crash waits for the chunk it had decided before counting it."""
    detail = "this Idempotency-Key was already used with a different request"
    first = memo.get(command)
    events = () if first is None else first.events
    return Reply(
        command_id=command.id, outcome="rejected", reason=reason, detail=detail, events=events
    )


def _from_memo(command: Envelope[Command], memo: Memo, *, duplicate: bool) -> Reply:
    decided = memo.get(command)
    if decided is None:
        raise RuntimeError(f"command {command.id} was neither decided nor refused")
    return Reply(
        command_id=command.id,
        outcome=decided.outcome,
        duplicate=duplicate,
        reason=decided.reason,
        detail=decided.detail,
        events=decided.events,
    )

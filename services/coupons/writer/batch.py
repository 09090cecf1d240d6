"""Deciding a batch of commands against a partition's state, in memory.

No I/O: `Decisions.decide` turns received commands (fetched from the commands topic, or handed
over through a local socket) into the records of the next transaction (events, public
announcements, dead letters) and one outcome per command, and folds the events into the
partition's state as it goes, so the next command is decided against it. The state thus runs
ahead of the log by at most one batch; a transaction that fails crashes the writer, which folds
its state anew from the log.

Every command is answered: a retry (its idempotency key decided before, same request) from
the memo; a reused key with another request is refused; an unreadable command or one keyed to
another partition is parked in the dead-letter topic; a command the aggregate fails on (a bug,
a value it cannot handle) is refused as `unprocessable` and parked, and the state is left as
it was (the decision and its fold are made aside and taken only whole).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

import structlog
from aiokafka.structs import ConsumerRecord

from contracts.codec import MalformedMessage
from contracts.envelope import Envelope
from contracts.reasons import Reason
from contracts.replies import EventPosition
from contracts.topics import Topics
from services.coupons import parked
from services.coupons.bus import kafka, local_sockets
from services.coupons.bus.dead_letters import dead_letter_headers, origin_headers
from services.coupons.domain.idempotency import RETENTION_S, KeyReused, Memo, request_hash
from services.coupons.writer.aggregate import Aggregate

log = structlog.get_logger(__name__)

MAX_BATCH = 500
"""Commands per transaction."""


@dataclass
class PartitionState:
    """Everything the writer of one partition knows, folded from its event partition: each
    aggregate instance's state by key, the idempotency memo (keys kept for `memo_window_s`),
    and the next command offset to decide, as the events checkpointed it."""

    aggregate: Aggregate
    states: dict[str, Any] = field(default_factory=dict)
    memo: Memo = field(default_factory=Memo)
    consumed: int = 0
    memo_window_s: float = RETENTION_S

    def __post_init__(self) -> None:
        self.memo = Memo(self.aggregate.refusal, self.memo_window_s)

    def apply(self, event: Envelope[Any], position: EventPosition) -> None:
        """Fold an event read back from the log; the memo first, so a command whose event
        cannot be folded (a poison event, skipped) is still answered as decided."""
        self.memo.replay(event, position)
        folded = self.aggregate.evolve(self.states.get(event.key), event.data, event.occurred_at)
        if folded is not None:
            self.states[event.key] = folded


@dataclass(frozen=True)
class Handed:
    """A command handed over through the local socket: it is on no topic, so has no offset."""

    value: bytes
    reply_to: bytes


@dataclass(frozen=True)
class HandedHere:
    """A command handed over in memory by this process's gateway (`bus.same_process`): no
    offset either, and already decoded."""

    command: Envelope[Any]
    reply_to: bytes | None

    @property
    def value(self) -> bytes:
        """Encoded, for the dead-letter topic (only an unprocessable command is parked)."""
        return self.command.to_bytes()


@dataclass(frozen=True)
class Timed:
    """A command a durable timer of the writer's own made: no offset, and nobody to answer."""

    value: bytes


Received: TypeAlias = ConsumerRecord[Any, Any] | Handed | HandedHere | Timed


@dataclass(frozen=True)
class Decided:
    """Decided now: its events are in this batch. `answered` adds to the reply."""

    command: Envelope[Any]
    reply_to: bytes | None
    decided_at: datetime
    answered: dict[str, Any]


@dataclass(frozen=True)
class Retried:
    """Its idempotency key was decided before, for the same request: the first outcome."""

    command: Envelope[Any]
    reply_to: bytes | None


@dataclass(frozen=True)
class KeyReusedOutcome:
    """Its idempotency key was decided before for another request: refused, nothing appended."""

    command: Envelope[Any]
    reply_to: bytes | None


Outcome: TypeAlias = Decided | Retried | KeyReusedOutcome
"""What a command read from the batch came to; each one is answered after the commit."""


@dataclass(frozen=True)
class Send:
    """One record of a transaction, encoded when its command was decided."""

    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    event: Envelope[Any] | None = None  # an appended event: placed in the memo once acked


@dataclass
class Batch:
    """Commands decided, in order, waiting for (or in) their transaction."""

    records: list[Received] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    states: dict[str, Any] = field(default_factory=dict)
    """The states its events changed, as they stand after them: set when it is sealed."""

    def seal(self, state: PartitionState) -> None:
        changed = {send.event.key for send in self.sends if send.event is not None}
        self.states = {key: state.states[key] for key in changed if key in state.states}

    def remembered(self) -> Iterator[Envelope[Any]]:
        """Envelopes whose keys its decisions put in the memo: its commands, its events."""
        yield from (o.command for o in self.outcomes if isinstance(o, Decided))
        yield from (send.event for send in self.sends if send.event is not None)

    def last_fetched(self) -> ConsumerRecord[Any, Any] | None:
        """The batch's last record of the commands topic, if any: its checkpoint."""
        fetched = (r for r in reversed(self.records) if isinstance(r, ConsumerRecord))
        return next(fetched, None)


@dataclass(frozen=True)
class Decisions:
    """Decides commands of one aggregate's partitions. `now` is the decisions' clock."""

    aggregate: Aggregate
    topics: Topics
    partitions: int
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def decide(
        self, batch: Batch, state: PartitionState, partition: int, records: list[Received]
    ) -> set[str]:
        """Decide `records`, in order, into `batch`, each against the state the ones before
        it left; returns the keys of the commands decided."""
        keys = set()
        if records:
            state.memo.expire(self.now())
        for record in records:
            batch.records.append(record)
            command = self._read(record, batch, partition)
            if command is None:
                continue
            outcome = self._decide_one(state, partition, record, command, batch)
            keys.add(command.key)
            if not isinstance(record, Timed):  # a timer's command is answered to nobody
                batch.outcomes.append(outcome)
        return keys

    def _decide_one(
        self,
        state: PartitionState,
        partition: int,
        record: Received,
        command: Envelope[Any],
        batch: Batch,
    ) -> Outcome:
        reply_to = _reply_address(record)
        digest = request_hash(command.data)  # once: it serialises the whole command
        try:
            if state.memo.recall(command, digest) is not None:
                return Retried(command, reply_to)
        except KeyReused:
            return KeyReusedOutcome(command, reply_to)
        now = self.now()  # the decision's time: checked against and recorded
        before = state.states.get(command.key)
        try:
            events = self.aggregate.decide(before, command.data, now)
            envelopes = [_event_envelope(command, event, now, digest) for event in events]
            after = before
            for envelope in envelopes:
                after = self.aggregate.evolve(after, envelope.data, now)
        except Exception as error:  # noqa: BLE001 - refused and parked, never a dead partition
            refusal = self.aggregate.unprocessable(command.data, repr(error))
            events, after = [refusal], before
            envelopes = [_event_envelope(command, refusal, now, digest)]
            reason = Reason.UNPROCESSABLE.value
            self._park(record, batch, partition, reason, repr(error), handed_too=True)
            parked.PARKED[self.aggregate.name, reason] += 1
        state.memo.begin(command, digest, events, now)
        if after is not None:
            state.states[command.key] = after
        for envelope in envelopes:
            batch.sends.append(
                Send(
                    self.topics.events.name,
                    envelope.to_bytes(),
                    envelope.key.encode(),
                    [("type", envelope.type.encode())],
                    partition=partition,
                    event=envelope,
                )
            )
            if after is not None:
                batch.sends.extend(
                    Send(a.topic, a.value, a.key, a.headers)
                    for a in self.aggregate.announce(after, envelope)
                )
        log.info(
            "decider.decided",
            correlation_id=command.correlation_id,
            command=command.data.type,
            events=[e.type for e in events],
        )
        return Decided(command, reply_to, now, self.aggregate.answered(events))

    def _read(self, record: Received, batch: Batch, partition: int) -> Envelope[Any] | None:
        """The command in `record`, or None once it is queued for the dead-letter topic (or,
        handed over, dropped: its gateway then appends it to the topic, where it is parked)."""
        if isinstance(record, HandedHere):
            command = record.command
        else:
            try:
                command = self.aggregate.commands.decode(record.value)
            except MalformedMessage as error:
                self._park(record, batch, partition, error.reason, error.detail)
                return None
        if kafka.partition_for(command.key, self.partitions) != partition:
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
        dead_letters = self.topics.dead_letters.name
        if isinstance(record, Handed | HandedHere | Timed):
            if not handed_too:
                log.error("decider.handed_command_dropped", reason=reason, detail=detail)
                return
            headers = origin_headers(self.topics.commands.name, partition, None, reason, detail)
            batch.sends.append(Send(dead_letters, record.value, None, headers))
            return
        headers = dead_letter_headers(record, reason, detail)
        batch.sends.append(Send(dead_letters, record.value, record.key, headers))


def _reply_address(record: Received) -> bytes | None:
    """Where the sender listens on this host for its reply, if it said."""
    if isinstance(record, Handed | HandedHere):
        return record.reply_to
    if isinstance(record, Timed):
        return None
    return kafka.header(record.headers, local_sockets.HEADER)


def _event_envelope(
    command: Envelope[Any], event: Any, now: datetime, digest: str
) -> Envelope[Any]:
    return Envelope[Any](
        key=command.key,
        occurred_at=now,
        causation_id=command.id,
        correlation_id=command.correlation_id,
        idempotency_key=command.idempotency_key,
        request_hash=digest,
        actor=command.actor,
        data=event,
    )

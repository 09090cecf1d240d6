"""Answering each command of a committed batch.

The replies follow the commit, outside the transaction: a reply then never waits for commit
markers, and the transaction has one partition less to add. A reply to a command sent by this
process's own gateway is handed to it in memory; one to a gateway of another process of this
host goes through that gateway's local socket (`bus.local_sockets`), each saving two round
trips to the broker; the others go through the replies topic. A crash between the commit and
a reply loses only the reply: the caller's retry with the same idempotency key is answered
from the memo."""

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from contracts.envelope import Envelope
from contracts.reasons import Reason
from contracts.replies import Reply
from services.coupons.bus import local_sockets
from services.coupons.domain.idempotency import Memo
from services.coupons.writer.batch import Decided, KeyReusedOutcome, Outcome


def reply_to(outcome: Outcome, memo: Memo) -> Reply:
    """The answer to a command once its batch is committed (its events placed in the memo)."""
    command = outcome.command
    if isinstance(outcome, KeyReusedOutcome):
        return _key_reused(command, memo)
    decided = memo.get(command)
    if decided is None:
        raise RuntimeError(f"command {command.id} was neither decided nor refused")
    reply = Reply(
        command_id=command.id,
        outcome=decided.outcome,
        duplicate=not isinstance(outcome, Decided),
        reason=decided.reason,
        detail=decided.detail,
        events=decided.events,
    )
    if isinstance(outcome, Decided) and reply.outcome == "accepted":
        reply = reply.model_copy(update={"decided_at": outcome.decided_at, **outcome.answered})
    return reply


def _key_reused(command: Envelope[Any], memo: Memo) -> Reply:
    """A refusal of a reused key, saying where the key's first request put its events: a code
    batch resumed after a crash waits for the chunk it had decided before counting it."""
    first = memo.get(command)
    return Reply(
        command_id=command.id,
        outcome="rejected",
        reason=Reason.IDEMPOTENCY_KEY_REUSED,
        detail="this Idempotency-Key was already used with a different request",
        events=() if first is None else first.events,
    )


class Replies:
    """Routes each reply: in memory, through a local socket, or through the replies topic."""

    def __init__(
        self,
        topic: str,
        producer: AIOKafkaProducer,
        outbox: local_sockets.Outbox,
        answer_here: Callable[[Reply], bool],
    ) -> None:
        self._topic = topic
        self._producer = producer
        self._outbox = outbox
        self._answer_here = answer_here

    async def send(self, outcome: Outcome, memo: Memo) -> None:
        reply = reply_to(outcome, memo)
        if self._answer_here(reply):
            return
        command = outcome.command
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
        await self._producer.send(self._topic, encoded, key=str(command.id).encode())

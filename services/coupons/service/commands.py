"""Send a command through the decider and return once its effects are readable.

Every write goes through `decide`: the command is appended durably, the decider's reply is
awaited, a refusal becomes `Refused` with its stable reason, and an acceptance waits until
this process's campaign view has applied the events and, unless the caller answers from the
reply itself, the `campaigns` projection too (read-your-writes)."""

from typing import Any

from aiokafka import TopicPartition

from contracts.base import Frozen
from contracts.envelope import Envelope
from contracts.replies import Reply
from projections import campaigns
from projections.watermarks import ProjectionNotCaughtUp
from services.coupons.bus.gateway import DecisionPending
from services.coupons.campaign_view import ViewNotCaughtUp
from services.coupons.runtime import Runtime
from services.coupons.service.calls import Call
from services.coupons.service.refusals import Refused


async def decide(
    call: Call,
    campaign_id: str,
    command: Frozen,
    idempotency_key: str,
    *,
    read_back: bool = True,
) -> Reply:
    """Decide `command`; with `read_back`, return once the `campaigns` projection has it."""
    runtime = call.runtime
    envelope: Envelope[Any] = Envelope(
        key=campaign_id,
        correlation_id=call.correlation_id,
        idempotency_key=idempotency_key,
        actor=call.actor,
        data=command,
    )
    try:
        reply = await runtime.gateway.decide(envelope)
    except DecisionPending as error:
        message = "the command is queued; retry with the same Idempotency-Key"
        raise _retry("decision_pending", message, idempotency_key) from error
    if reply.outcome == "rejected":
        assert reply.reason is not None
        raise Refused(reply.reason.value, reply.detail or "", idempotency_key=idempotency_key)
    timeout = runtime.settings.command_timeout_s
    try:
        for position in reply.events:
            await runtime.view.wait(position.partition, position.offset, timeout)
            if read_back:
                await runtime.watermarks.wait(
                    campaigns.NAME, position.partition, position.offset, timeout
                )
    except (ProjectionNotCaughtUp, ViewNotCaughtUp) as error:
        message = "accepted, not yet readable; retry with the same Idempotency-Key"
        raise _retry("projection_lagging", message, idempotency_key) from error
    return reply


def _retry(code: str, message: str, idempotency_key: str | None = None) -> Refused:
    return Refused(code, message, retry_after_s=1, idempotency_key=idempotency_key)


async def caught_up(runtime: Runtime) -> None:
    """Return once the `campaigns` projection has every event appended before this call: for
    a read that missed, since a write answered from its reply may not be projected yet.
    Appended, not committed: a decider answers once its transaction has committed, but the
    commit markers that make it visible to readers (and move the topic's committed end) may
    still be on their way, so a read right after the answer, in another replica, would not
    wait for them. The view reaches the high watermark once every transaction before it has
    ended."""
    timeout = runtime.settings.command_timeout_s
    try:
        tps = [TopicPartition(runtime.topics.events.name, p) for p in range(runtime.partitions)]
        ends = await runtime.appended.end_offsets(tps)
        await runtime.view.reach({tp.partition: at for tp, at in ends.items()}, timeout)
        for partition, offset in runtime.view.folded().items():
            await runtime.watermarks.wait(campaigns.NAME, partition, offset, timeout)
    except (ProjectionNotCaughtUp, ViewNotCaughtUp) as error:
        raise _retry("projection_lagging", "the read model is behind; retry shortly") from error

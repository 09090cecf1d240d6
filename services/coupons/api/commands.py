"""Send a command through the decider and return once its effects are readable.

Every write endpoint goes through `execute`: the command is appended durably, the decider's
reply is awaited, a refusal becomes an `ApiError` with its stable reason, and an acceptance
waits until this process's campaign view has applied the events and, unless the caller
answers from the reply itself, the `campaigns` projection too (read-your-writes)."""

from typing import Any

from aiokafka import TopicPartition
from fastapi import Request

from contracts.base import Frozen
from contracts.envelope import Envelope
from contracts.replies import Reply
from projections import campaigns
from projections.watermarks import ProjectionNotCaughtUp
from services.coupons.api.errors import REFUSAL_STATUS, ApiError
from services.coupons.bus.gateway import DecisionPending
from services.coupons.campaign_view import ViewNotCaughtUp
from services.coupons.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def execute(
    request: Request,
    campaign_id: str,
    command: Frozen,
    idempotency_key: str,
    *,
    read_back: bool = True,
) -> Reply:
    """Decide `command`; with `read_back`, return once the `campaigns` projection has it."""
    runtime = runtime_of(request)
    envelope: Envelope[Any] = Envelope(
        key=campaign_id,
        correlation_id=str(request.state.correlation_id),
        idempotency_key=idempotency_key,
        actor=getattr(request.state, "actor", None),
        data=command,
    )
    retry = {"Idempotency-Key": idempotency_key, "Retry-After": "1"}
    try:
        reply = await runtime.gateway.decide(envelope)
    except DecisionPending as error:
        message = "the command is queued; retry with the same Idempotency-Key"
        raise ApiError(503, "decision_pending", message, headers=retry) from error
    if reply.outcome == "rejected":
        assert reply.reason is not None
        raise ApiError(
            REFUSAL_STATUS[reply.reason],
            reply.reason.value,
            reply.detail or "",
            headers={"Idempotency-Key": idempotency_key},
        )
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
        raise ApiError(503, "projection_lagging", message, headers=retry) from error
    return reply


async def caught_up(request: Request) -> None:
    """Return once the `campaigns` projection has every event appended before this call: for
    a read that missed, since a write answered from its reply may not be projected yet.
    Appended, not committed: a decider answers once its transaction has committed, but the
    commit markers that make it visible to readers (and move the topic's committed end) may
    still be on their way, so a read right after the answer, in another replica, would not
    wait for them. The view reaches the high watermark once every transaction before it has
    ended."""
    runtime = runtime_of(request)
    timeout = runtime.settings.command_timeout_s
    try:
        tps = [TopicPartition(runtime.topics.events.name, p) for p in range(runtime.partitions)]
        ends = await runtime.appended.end_offsets(tps)
        await runtime.view.reach({tp.partition: at for tp, at in ends.items()}, timeout)
        for partition, offset in runtime.view.folded().items():
            await runtime.watermarks.wait(campaigns.NAME, partition, offset, timeout)
    except (ProjectionNotCaughtUp, ViewNotCaughtUp) as error:
        message = "the read model is behind; retry shortly"
        raise ApiError(503, "projection_lagging", message, headers={"Retry-After": "1"}) from error

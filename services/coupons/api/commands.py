"""Send a command through the decider and return once its effects are readable.

Every write endpoint goes through `execute`: the command is appended durably, the decider's
reply is awaited, a refusal becomes an `ApiError` with its stable reason, and an acceptance
waits until the `campaigns` projection and this process's campaign view have applied the
events (read-your-writes)."""

from typing import Any

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
    request: Request, campaign_id: str, command: Frozen, idempotency_key: str
) -> Reply:
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
            await runtime.watermarks.wait(
                campaigns.NAME, position.partition, position.offset, timeout
            )
            await runtime.view.wait(position.partition, position.offset, timeout)
    except (ProjectionNotCaughtUp, ViewNotCaughtUp) as error:
        message = "accepted, not yet readable; retry with the same Idempotency-Key"
        raise ApiError(503, "projection_lagging", message, headers=retry) from error
    return reply

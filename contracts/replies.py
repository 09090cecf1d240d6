"""The decider's answer to one command, on the short-lived replies topic."""

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime

from contracts.base import Frozen
from contracts.events import CodeRedeemed, CodeReserved
from contracts.reasons import Reason


class EventPosition(Frozen):
    """Where an appended event sits in the event log."""

    partition: int
    offset: int


class Reply(Frozen):
    """`accepted` appended events; `rejected` appended a CommandRejected; either may be a
    `duplicate`: the same idempotency key was decided before and this is that first outcome.

    A first (not duplicate) acceptance also carries when it was decided and the redemption it
    recorded, if any, so checkout answers without waiting for a read model."""

    type: Literal["coupon.command_decided.v1"] = "coupon.command_decided.v1"
    command_id: UUID
    outcome: Literal["accepted", "rejected"]
    duplicate: bool = False
    reason: Reason | None = None
    detail: str | None = None
    events: tuple[EventPosition, ...] = ()
    decided_at: AwareDatetime | None = None
    redeemed: CodeRedeemed | None = None
    reserved: CodeReserved | None = None

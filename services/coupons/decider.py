"""The campaign decider: the single-writer engine (`services/coupons/writer`) over the campaign
aggregate (`services/coupons/domain/campaign.py`). This module is only the wiring: how the
engine reads campaign commands and events, how a campaign refuses, and that a distribution is
announced to sequence engines on the public `coupons.issued.v1` topic, in the same transaction
as the `CodeDistributed` event it announces."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from contracts.codec import COMMANDS, EVENTS
from contracts.commands import Command
from contracts.envelope import Envelope
from contracts.events import CodeDistributed, CodeRedeemed, CodeReserved, CommandRejected, Event
from contracts.money import AmountOff, PercentOff
from contracts.public import CouponIssued
from contracts.reasons import Reason
from contracts.replies import Reply
from contracts.rules import Duration, Eligibility, Limits, Validity
from contracts.topics import Topics
from services.coupons.bus.same_process import SameProcess
from services.coupons.domain import campaign, reservations, summary
from services.coupons.domain.campaign_state import CodeChunk, Redemption
from services.coupons.domain.idempotency import RETENTION_S, campaign_refusal
from services.coupons.domain.memo_bucket import Decided
from services.coupons.writer.aggregate import Announcement
from services.coupons.writer.engine import TakeCommitted, Writers, nowhere
from services.coupons.writer.intake import REBIND_S
from services.coupons.writer.snapshot_codec import fingerprint
from services.coupons.writer.snapshots import Snapshots
from services.coupons.writer.timers import Timer

__all__ = ["REBIND_S", "STATE_VERSION", "CampaignAggregate", "Decider"]

STATE_VERSION = fingerprint(
    campaign.Campaign,
    Redemption,
    CodeChunk,
    reservations.Holds,
    reservations.Reservation,
    Decided,
    PercentOff,
    AmountOff,
    Duration,
    Validity,
    Limits,
    Eligibility,
)
"""The shape of a partition's state (campaigns and memo): a snapshot written by code whose
state types differ from these is not trusted (`writer.snapshots`)."""
_ISSUED = Envelope[CouponIssued]
"""Parametrised once: pydantic computes a cache key at every `Envelope[...]`, per issue here."""


class CampaignAggregate:
    name = "decider"
    commands = COMMANDS
    events = EVENTS

    def __init__(self, topics: Topics) -> None:
        self._issued = topics.issued.name

    def decide(
        self, state: campaign.Campaign | None, command: Command, now: datetime
    ) -> list[Event]:
        return campaign.decide(state, command, now)

    def evolve(
        self, state: campaign.Campaign | None, event: Event, occurred_at: datetime
    ) -> campaign.Campaign | None:
        return campaign.evolve(state, event, occurred_at)

    def unprocessable(self, command: Command, detail: str) -> CommandRejected:
        return CommandRejected(
            campaign_id=command.campaign_id,
            command_type=command.type,
            reason=Reason.UNPROCESSABLE,
            detail=f"the decider could not process this command ({detail[:200]}); it is parked",
        )

    def refusal(self, event: Event) -> tuple[Reason, str] | None:
        return campaign_refusal(event)

    def announce(self, state: campaign.Campaign, envelope: Envelope[Any]) -> list[Announcement]:
        """Tell sequence engines of a distribution."""
        event = envelope.data
        if not isinstance(event, CodeDistributed):
            return []
        public = _ISSUED(
            key=event.contact_id,
            occurred_at=envelope.occurred_at,
            causation_id=envelope.id,
            correlation_id=envelope.correlation_id,
            actor=envelope.actor,
            data=summary.issued(state, event),
        )
        headers = [("type", public.type.encode())]
        return [Announcement(self._issued, event.contact_id.encode(), public.to_bytes(), headers)]

    def timers(self, key: str, state: campaign.Campaign) -> list[Timer]:
        """Each reservation is released when it expires."""
        return [
            Timer(at, f"release:{command.reservation_id}", command)
            for at, command in reservations.due(key, state.holds)
        ]

    def answered(self, events: list[Event]) -> dict[str, Any]:
        """A redemption's reply carries it: checkout answers without a read model."""
        for event in events:
            if isinstance(event, CodeRedeemed):
                return {"redeemed": event}
            if isinstance(event, CodeReserved):
                return {"reserved": event}
        return {}


def Decider(
    bootstrap: str,
    topics: Topics,
    partitions: int,
    answer_here: Callable[[Reply], bool] = lambda _: False,
    fold_here: TakeCommitted = nowhere,
    snapshots: Snapshots | None = None,
    memo_window_s: float = RETENTION_S,
    same_process: SameProcess | None = None,
) -> Writers:
    """The writers of the campaign command partitions this process is assigned."""
    aggregate = CampaignAggregate(topics)
    return Writers(
        aggregate,
        bootstrap,
        topics,
        partitions,
        answer_here,
        fold_here,
        snapshots=snapshots,
        memo_window_s=memo_window_s,
        same_process=same_process,
    )

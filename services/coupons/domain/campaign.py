"""The campaign aggregate: `decide` what a command means, `evolve` state by an event.

The campaign is the consistency boundary: its limits (total, per contact, per code, budget)
are checked here against the state folded from every earlier event, by the one writer of
its partition, so they hold exactly under any concurrency. Usage lives in persistent maps
(`immutables.Map`, a HAMT), so `evolve` stays pure without copying a campaign's whole history
on every event.
"""

import sys
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from contracts import bounds
from contracts.commands import (
    AddCodes,
    ChangeCampaignStatus,
    Command,
    DefineCampaign,
    DistributeCode,
    RecordRedemption,
    RedeemCode,
    RefundRedemption,
    ReleaseReservation,
    ReserveCode,
    ReverseRedemption,
    Status,
    UpdateCampaign,
)
from contracts.events import (
    CampaignDefined,
    CampaignStatusChanged,
    CampaignUpdated,
    CodeDistributed,
    CodeRedeemed,
    CodeReserved,
    CodesAdded,
    CodesLow,
    CommandRejected,
    Event,
    RedemptionRefunded,
    RedemptionReversed,
    ReservationReleased,
)
from contracts.reasons import Reason
from contracts.rules import Validity
from services.coupons.domain import reserving, stock
from services.coupons.domain.campaign_state import Campaign as Campaign
from services.coupons.domain.campaign_state import CodeChunk, Redemption
from services.coupons.domain.refusals import SPENT_TOO_MUCH, priced, rejected
from services.coupons.domain.reservations import Reservation

_T = TypeVar("_T")

TRANSITIONS: dict[Status, frozenset[Status]] = {
    "draft": frozenset({"active", "ended"}),
    "active": frozenset({"paused", "ended"}),
    "paused": frozenset({"active", "ended"}),
    "ended": frozenset(),
}


def decide(campaign: Campaign | None, command: Command, now: datetime) -> list[Event]:
    """The events `command` produces against the current state. A business refusal is a
    `CommandRejected` event with a stable reason, never an exception."""
    if isinstance(command, DefineCampaign):
        if campaign is not None:
            return [rejected(command, Reason.CAMPAIGN_EXISTS, f"campaign {campaign.id} exists")]
        validity = command.validity
        if validity.expires_at is None:
            expires = (validity.starts_at or now) + timedelta(days=command.default_expiry_days)
            if expires >= bounds.MAX_TIME:
                detail = f"the default expiry, {expires.date()}, is after 2200: set expires_at"
                return [rejected(command, Reason.INVALID_TERMS, detail)]
            validity = Validity(starts_at=validity.starts_at, expires_at=expires)
        fields = command.model_dump(exclude={"type", "default_expiry_days", "validity"})
        return [CampaignDefined.model_validate({**fields, "validity": validity})]
    if campaign is None:
        return [rejected(command, Reason.CAMPAIGN_NOT_FOUND, f"no campaign {command.campaign_id}")]
    match command:
        case ChangeCampaignStatus():
            return _change_status(campaign, command)
        case UpdateCampaign():
            return _update(campaign, command)
        case RedeemCode():
            return _redeem(campaign, command, now)
        case ReverseRedemption():
            return _reverse(campaign, command)
        case DistributeCode():
            return _distribute(campaign, command, now)
        case AddCodes():
            return _add_codes(campaign, command)
        case RecordRedemption():
            return _record(campaign, command)
        case RefundRedemption():
            return _refund(campaign, command)
        case ReserveCode():
            return reserving.reserve(campaign, command, now)
        case ReleaseReservation():
            return reserving.release(campaign, command, now)


def _add_codes(campaign: Campaign, command: AddCodes) -> list[Event]:
    if campaign.status == "ended":
        return [rejected(command, Reason.ENDED, "the campaign has ended")]
    new = tuple(campaign.not_owned(command.codes))
    if not new:
        return []
    return [
        CodesAdded(
            campaign_id=campaign.id, batch_id=command.batch_id, chunk=command.chunk, codes=new
        )
    ]


def _code_for(campaign: Campaign, contact_id: str) -> str | None:
    """A contact keeps the unique code they were given; else the next free one; else the
    shared code."""
    if contact_id in campaign.holders:
        return campaign.holders[contact_id]
    return campaign.next_unique() or campaign.code


def _distribute(campaign: Campaign, command: DistributeCode, now: datetime) -> list[Event]:
    """Distribution may precede the start (the message says when it expires), not the end;
    a draft distributes nothing (it may never go live)."""
    if campaign.status == "ended":
        return [rejected(command, Reason.ENDED, "the campaign has ended")]
    if campaign.status == "draft":
        detail = "the campaign is a draft: activate it first"
        return [rejected(command, Reason.NOT_STARTED, detail)]
    expires_at = campaign.validity.expires_at
    if expires_at is not None and now >= expires_at:
        return [rejected(command, Reason.EXPIRED, f"expired at {expires_at.isoformat()}")]
    code = _code_for(campaign, command.contact_id)
    if code is None:
        return [rejected(command, Reason.NO_CODE_AVAILABLE, "every unique code is given out")]
    return [
        CodeDistributed(
            campaign_id=campaign.id,
            distribution_id=command.distribution_id,
            code=code,
            contact_id=command.contact_id,
            email=command.email,
            channel=command.channel,
            source_ref=command.source_ref,
            expires_at=expires_at,
        ),
        *stock.codes_low_after(campaign, command.contact_id, code),
    ]


def _change_status(campaign: Campaign, command: ChangeCampaignStatus) -> list[Event]:
    if command.status == campaign.status:
        return []
    if command.status not in TRANSITIONS[campaign.status]:
        detail = f"a campaign cannot go from {campaign.status} to {command.status}"
        return [rejected(command, Reason.INVALID_STATUS_TRANSITION, detail)]
    return [
        CampaignStatusChanged(
            campaign_id=campaign.id,
            status=command.status,
            previous=campaign.status,
            reason=command.reason,
        )
    ]


def _update(campaign: Campaign, command: UpdateCampaign) -> list[Event]:
    """Only the parts that differ are recorded. Every coupon expires, so a window without
    `expires_at` keeps the current one. A lower limit than the usage so far is allowed: the
    campaign is then exhausted, and nothing already redeemed is undone."""
    if campaign.status == "ended":
        return [rejected(command, Reason.ENDED, "the campaign has ended")]
    validity = command.validity
    if validity is not None and validity.expires_at is None:
        expires_at = campaign.validity.expires_at
        if validity.starts_at and expires_at and expires_at <= validity.starts_at:
            detail = "starts_at must be before the current expires_at"
            return [rejected(command, Reason.INVALID_TERMS, detail)]
        validity = Validity(starts_at=validity.starts_at, expires_at=expires_at)
    limits = command.limits or campaign.limits
    eligibility = command.eligibility or campaign.eligibility
    if (limits.budget or eligibility.min_amount) and campaign.discount.currency is None:
        detail = "a budget or a minimum amount needs the discount's currency"
        return [rejected(command, Reason.INVALID_TERMS, detail)]
    updated = CampaignUpdated(
        campaign_id=campaign.id,
        name=_changed(command.name, campaign.name),
        validity=_changed(validity, campaign.validity),
        limits=_changed(command.limits, campaign.limits),
        eligibility=_changed(command.eligibility, campaign.eligibility),
        reason=command.reason,
    )
    parts = (updated.name, updated.validity, updated.limits, updated.eligibility)
    if all(part is None for part in parts):
        return []
    return [updated]


def _changed(new: _T | None, current: _T) -> _T | None:
    return None if new is None or new == current else new


def _redeem(campaign: Campaign, command: RedeemCode, now: datetime) -> list[Event]:
    if command.redemption_id in campaign.ledger:
        return [rejected(command, Reason.REDEMPTION_EXISTS, "this redemption id was used")]
    if command.reservation_id is not None:
        return reserving.redeem_reserved(campaign, command, now)
    price = priced(campaign, command, now)
    if isinstance(price, CommandRejected):
        return [price]
    cart = command.cart
    return [
        CodeRedeemed(
            campaign_id=campaign.id,
            redemption_id=command.redemption_id,
            code=command.code,
            contact_id=command.customer.contact_id,
            order_ref=command.order_ref,
            currency=cart.currency,
            amount=cart.amount,
            discount=price.discount,
            total=price.total,
        )
    ]


def _standing(
    campaign: Campaign, command: ReverseRedemption | RefundRedemption
) -> Redemption | CommandRejected:
    """The redemption the command is about, or why there is none to act on."""
    redemption = campaign.ledger.get(command.redemption_id)
    if redemption is None:
        return rejected(command, Reason.REDEMPTION_NOT_FOUND, "no such redemption")
    if redemption.reversed:
        return rejected(command, Reason.ALREADY_REVERSED, "the redemption was reversed")
    return redemption


def _reverse(campaign: Campaign, command: ReverseRedemption) -> list[Event]:
    redemption = _standing(campaign, command)
    if isinstance(redemption, CommandRejected):
        return [redemption]
    return [
        RedemptionReversed(
            campaign_id=campaign.id,
            redemption_id=command.redemption_id,
            contact_id=redemption.contact_id,
            discount=redemption.discount,
            reason=command.reason,
        )
    ]


def _record(campaign: Campaign, command: RecordRedemption) -> list[Event]:
    """No limit is checked: the payment system granted the discount already."""
    if command.redemption_id in campaign.ledger:
        return [rejected(command, Reason.REDEMPTION_EXISTS, "this redemption id was used")]
    if campaign.budget_spent + command.discount > bounds.MAX_TOTAL:
        return [rejected(command, Reason.OUT_OF_RANGE, SPENT_TOO_MUCH)]
    return [
        CodeRedeemed(
            campaign_id=campaign.id,
            redemption_id=command.redemption_id,
            code=command.code,
            contact_id=command.contact_id,
            order_ref=command.order_ref,
            currency=command.currency,
            amount=command.amount,
            discount=command.discount,
            total=command.total,
            source=command.source,
        )
    ]


def _refund(campaign: Campaign, command: RefundRedemption) -> list[Event]:
    redemption = _standing(campaign, command)
    if isinstance(redemption, CommandRejected):
        return [redemption]
    if command.refund_id in redemption.refunds:
        return []  # this refund counted already
    if redemption.refunded + command.refunded > bounds.MAX_TOTAL:
        detail = "the redemption's refunds would pass 10^18 minor units"
        return [rejected(command, Reason.OUT_OF_RANGE, detail)]
    return [
        RedemptionRefunded(
            campaign_id=campaign.id,
            redemption_id=command.redemption_id,
            contact_id=redemption.contact_id,
            refund_id=command.refund_id,
            currency=command.currency,
            refunded=command.refunded,
            reason=command.reason,
        )
    ]


def evolve(campaign: Campaign | None, event: Event, occurred_at: datetime) -> Campaign | None:
    match event:
        case CampaignDefined():
            return Campaign(
                id=event.campaign_id,
                name=event.name,
                discount=event.discount,
                defined_at=occurred_at,
                code=event.code,
                status=event.status,
                duration=event.duration,
                validity=event.validity,
                limits=event.limits,
                eligibility=event.eligibility,
            )
        case CommandRejected():
            return campaign
    if campaign is None:
        raise ValueError(f"{event.type} for a campaign that was never defined")
    match event:
        case CampaignUpdated():
            return replace(
                campaign,
                name=event.name or campaign.name,
                validity=event.validity or campaign.validity,
                limits=event.limits or campaign.limits,
                eligibility=event.eligibility or campaign.eligibility,
            )
        case CampaignStatusChanged():
            return replace(campaign, status=event.status)
        case CodesLow():
            return campaign
        case CodesAdded():
            return replace(
                campaign,
                chunks=(*campaign.chunks, CodeChunk.of(event.codes)),
            )
        case CodeDistributed():
            counted = replace(campaign, distributed=campaign.distributed + 1)
            if not campaign.is_unique(event.code) or event.code in campaign.holder_of:
                return counted  # the shared code, or a unique code its holder got again
            code, contact = sys.intern(event.code), sys.intern(event.contact_id)
            return replace(
                counted,
                holder_of=campaign.holder_of.set(code, contact),
                handed_out=campaign.handed_out + 1,
                holders=campaign.holders.set(contact, code),
            )
        case CodeRedeemed():
            done = Redemption(sys.intern(event.contact_id), sys.intern(event.code), event.discount)
            if event.reservation_id is not None:  # held until now: counted once
                campaign = reserving.held_no_more(campaign, event.reservation_id)
            return _use(campaign, event.redemption_id, done, +1)
        case CodeReserved():
            held = Reservation(
                event.contact_id,
                event.code,
                event.currency,
                event.amount,
                event.discount,
                event.total,
                event.expires_at,
            )
            return replace(campaign, holds=campaign.holds.add(event.reservation_id, held))
        case ReservationReleased():
            return reserving.held_no_more(campaign, event.reservation_id)
        case RedemptionReversed():
            done = replace(campaign.ledger[event.redemption_id], reversed=True)
            return _use(campaign, event.redemption_id, done, -1)
        case RedemptionRefunded():
            # revenue only: the redemption keeps its limits and budget
            refunded = campaign.ledger[event.redemption_id]
            done = replace(
                refunded,
                refunds=refunded.refunds | {event.refund_id},
                refunded=refunded.refunded + event.refunded,
            )
            return replace(campaign, ledger=campaign.ledger.set(event.redemption_id, done))
    raise AssertionError(f"unhandled event {event.type}")


def _use(campaign: Campaign, redemption_id: str, done: Redemption, sign: int) -> Campaign:
    """Count a redemption in (+1) or out (-1) of every limit it uses."""
    return replace(
        campaign,
        redemptions=campaign.redemptions + sign,
        budget_spent=campaign.budget_spent + sign * done.discount,
        per_contact=campaign.per_contact.set(
            done.contact_id, campaign.per_contact.get(done.contact_id, 0) + sign
        ),
        per_code=campaign.per_code.set(done.code, campaign.per_code.get(done.code, 0) + sign),
        ledger=campaign.ledger.set(redemption_id, done),
    )

"""The decisions about reservations (`domain.reservations` holds their state): reserve a use,
release it (by the shopper, or on time by the writer's timer), and redeem what a reservation
holds."""

from dataclasses import replace
from datetime import datetime, timedelta

from contracts.commands import RedeemCode, ReleaseReservation, ReserveCode
from contracts.events import CodeRedeemed, CodeReserved, CommandRejected, Event, ReservationReleased
from contracts.reasons import Reason
from services.coupons.domain.campaign_state import Campaign
from services.coupons.domain.refusals import priced, rejected


def reserve(campaign: Campaign, command: ReserveCode, now: datetime) -> list[Event]:
    """Checked as a redemption is, and counted as one until it ends."""
    if command.reservation_id in campaign.holds.reservations:
        return [rejected(command, Reason.RESERVATION_EXISTS, "this reservation id is held")]
    price = priced(campaign, command, now, held_budget=campaign.holds.budget)
    if isinstance(price, CommandRejected):
        return [price]
    cart, ttl = command.cart, command.ttl_s or campaign.limits.reservation_ttl_s
    return [
        CodeReserved(
            campaign_id=campaign.id,
            reservation_id=command.reservation_id,
            code=command.code,
            contact_id=command.customer.contact_id,
            currency=cart.currency,
            amount=cart.amount,
            discount=price.discount,
            total=price.total,
            expires_at=now + timedelta(seconds=ttl),
        )
    ]


def release(campaign: Campaign, command: ReleaseReservation, now: datetime) -> list[Event]:
    """By the shopper; or, `expired`, by the writer's timer, which may find the reservation
    redeemed or released already (nothing to do) or not yet due (a clock stepped back)."""
    held = campaign.holds.reservations.get(command.reservation_id)
    if held is None:
        if command.expired:
            return []
        return [rejected(command, Reason.RESERVATION_NOT_FOUND, "no such reservation held")]
    if command.expired and now < held.expires_at:
        return []
    return [
        ReservationReleased(
            campaign_id=campaign.id, reservation_id=command.reservation_id, expired=command.expired
        )
    ]


def redeem_reserved(campaign: Campaign, command: RedeemCode, now: datetime) -> list[Event]:
    """What the reservation holds becomes a redemption: no rule is checked again but its
    expiry, and that it is this code's and this contact's."""
    assert command.reservation_id is not None
    held = campaign.holds.reservations.get(command.reservation_id)
    if held is None:
        return [rejected(command, Reason.RESERVATION_NOT_FOUND, "no such reservation held")]
    if now >= held.expires_at:
        detail = f"the reservation expired at {held.expires_at.isoformat()}"
        return [rejected(command, Reason.RESERVATION_EXPIRED, detail)]
    if held.code != command.code or held.contact_id != command.customer.contact_id:
        detail = "the reservation is for another code or contact"
        return [rejected(command, Reason.NOT_THIS_RESERVATION, detail)]
    return [
        CodeRedeemed(
            campaign_id=campaign.id,
            redemption_id=command.redemption_id,
            code=held.code,
            contact_id=held.contact_id,
            order_ref=command.order_ref,
            currency=held.currency,
            amount=held.amount,
            discount=held.discount,
            total=held.total,
            reservation_id=command.reservation_id,
        )
    ]


def held_no_more(campaign: Campaign, reservation_id: str) -> Campaign:
    return replace(campaign, holds=campaign.holds.remove(reservation_id))

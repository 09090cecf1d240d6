"""Reservations: hold one use of a code for a shopper's cart during checkout ("reserve on
apply, release on timeout", for flash sales). A reservation counts against every limit as a
redemption does; redeeming with its id turns it into one (nothing can refuse it then but its
expiry); releasing gives it back; its expiry releases it on time, without any request (the
campaign writer's durable timer)."""

from typing import Any
from uuid import NAMESPACE_URL, uuid5

from contracts.commands import ReleaseReservation, ReserveCode
from contracts.reasons import Reason
from services.coupons.domain.codes import normalise
from services.coupons.domain.guessing import GUESSES
from services.coupons.runtime import Runtime
from services.coupons.service.calls import Call
from services.coupons.service.checkout_lookups import (
    campaign_of,
    guessed,
    segments_of,
    throttled,
)
from services.coupons.service.checkout_models import ReservationRequest
from services.coupons.service.commands import decide
from services.coupons.service.refusals import Refused

RESERVATION_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/reservation")


async def reserve(
    call: Call, body: ReservationRequest, idempotency_key: str, address: str | None
) -> dict[str, Any]:
    """Hold one use of the code for this customer and cart, checked as a redemption is. The
    same idempotency key and body give the same reservation."""
    shopper = throttled(call, body.customer, address)
    code = normalise(body.code)
    campaign = await campaign_of(call.runtime, code)
    if campaign is None:
        await guessed(call, shopper, 1)
        raise Refused(Reason.UNKNOWN_CODE.value, f"no such code {code}", field="code")
    reservation_id = str(uuid5(RESERVATION_NAMESPACE, f"{campaign.id}:{idempotency_key}"))
    segments = await segments_of(call.runtime, body.customer, [campaign])
    command = ReserveCode(
        campaign_id=campaign.id,
        reservation_id=reservation_id,
        code=code,
        customer=body.customer,
        cart=body.cart,
        ttl_s=body.ttl_s,
        segments=segments,
    )
    try:
        reply = await decide(call, campaign.id, command, idempotency_key, read_back=False)
    except Refused as refused:
        await guessed(call, shopper, int(refused.code in GUESSES))
        raise
    if reply.reserved is not None:
        return {**reply.reserved.model_dump(exclude={"type"})}
    return held(call.runtime, reservation_id)  # a retry: from the view, which has it by now


async def release(call: Call, reservation_id: str) -> dict[str, Any]:
    """Give the reservation's hold back. Retrying is safe."""
    holding = held(call.runtime, reservation_id)
    command = ReleaseReservation(campaign_id=holding["campaign_id"], reservation_id=reservation_id)
    await decide(call, holding["campaign_id"], command, f"release:{reservation_id}")
    return holding


def held(runtime: Runtime, reservation_id: str) -> dict[str, Any]:
    """A reservation while it holds; refused (`reservation_not_found`) once redeemed, released
    or expired."""
    campaign = runtime.view.campaign_of_reservation(reservation_id)
    holding = None if campaign is None else campaign.holds.reservations.get(reservation_id)
    if campaign is None or holding is None:
        message = f"no reservation {reservation_id} holds anything"
        raise Refused(Reason.RESERVATION_NOT_FOUND.value, message)
    return {
        "reservation_id": reservation_id,
        "campaign_id": campaign.id,
        "code": holding.code,
        "contact_id": holding.contact_id,
        "currency": holding.currency,
        "amount": holding.amount,
        "discount": holding.discount,
        "total": holding.total,
        "expires_at": holding.expires_at,
    }

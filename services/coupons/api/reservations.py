"""`/v1/reservations`: hold one use of a code for a shopper's cart during checkout ("reserve on
apply, release on timeout", for flash sales). A reservation counts against every limit as a
redemption does; `POST /v1/redemptions` with its `reservation_id` turns it into one (nothing
can refuse it then but its expiry); `DELETE` releases it; its expiry releases it on time,
without any request (the campaign writer's durable timer)."""

from typing import Annotated, Any
from uuid import NAMESPACE_URL, uuid5

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from contracts.bounds import Label
from contracts.checkout import Cart, Customer
from contracts.commands import ReleaseReservation, ReserveCode
from contracts.reasons import Reason
from contracts.rules import MAX_RESERVATION_TTL_S
from services.coupons.api import checkout
from services.coupons.api.auth import require
from services.coupons.api.commands import execute, runtime_of
from services.coupons.api.errors import ApiError
from services.coupons.api.params import RedemptionPath, RequiredIdempotencyKey
from services.coupons.domain.codes import normalise
from services.coupons.domain.guessing import GUESSES

router = APIRouter(
    prefix="/v1/reservations", tags=["checkout"], dependencies=[Depends(require("checkout"))]
)
RESERVATION_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/reservation")


class ReservationRequest(BaseModel):
    code: Annotated[Label, Field(min_length=1, max_length=100)]
    customer: Customer
    cart: Cart
    ttl_s: Annotated[int, Field(ge=1, le=MAX_RESERVATION_TTL_S)] | None = None
    """How long it holds (default: the campaign's `limits.reservation_ttl_s`, 15 minutes)."""


class Reservation(BaseModel):
    reservation_id: str
    campaign_id: str
    code: str
    contact_id: str
    currency: str
    amount: int
    discount: int
    total: int
    expires_at: AwareDatetime


@router.post(
    "",
    status_code=201,
    response_model=Reservation,
    responses=checkout.ERRORS,
    openapi_extra=checkout.SHOPPER_ADDRESS_DOC,
)
async def reserve(
    body: ReservationRequest,
    request: Request,
    response: Response,
    idempotency_key: RequiredIdempotencyKey,
) -> dict[str, Any]:
    """Hold one use of the code for this customer and cart, checked as a redemption is. The
    same `Idempotency-Key` and body give the same reservation."""
    shopper = checkout.throttled(request, body.customer)
    code = normalise(body.code)
    campaign = await checkout.campaign_of(request, code)
    if campaign is None:
        await checkout.guessed(request, shopper, 1)
        raise ApiError(404, Reason.UNKNOWN_CODE.value, f"no such code {code}", field="code")
    reservation_id = str(uuid5(RESERVATION_NAMESPACE, f"{campaign.id}:{idempotency_key}"))
    segments = await checkout.segments_of(request, body.customer, [campaign])
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
        reply = await execute(request, campaign.id, command, idempotency_key, read_back=False)
    except ApiError as refused:
        await checkout.guessed(request, shopper, int(refused.code in GUESSES))
        raise
    response.headers["Location"] = f"/v1/reservations/{reservation_id}"
    if reply.reserved is not None:
        return {**reply.reserved.model_dump(exclude={"type"})}
    return _held(request, reservation_id)  # a retry: from the view, which has it by now


@router.get("/{reservation_id}", response_model=Reservation, responses=checkout.ERRORS)
async def get_reservation(reservation_id: RedemptionPath, request: Request) -> dict[str, Any]:
    """A reservation while it holds; `404 reservation_not_found` once redeemed, released or
    expired."""
    return _held(request, reservation_id)


@router.delete("/{reservation_id}", response_model=Reservation, responses=checkout.ERRORS)
async def release(reservation_id: RedemptionPath, request: Request) -> dict[str, Any]:
    """Give the reservation's hold back. Retrying is safe."""
    held = _held(request, reservation_id)
    command = ReleaseReservation(campaign_id=held["campaign_id"], reservation_id=reservation_id)
    await execute(request, held["campaign_id"], command, f"release:{reservation_id}")
    return held


def _held(request: Request, reservation_id: str) -> dict[str, Any]:
    campaign = runtime_of(request).view.campaign_of_reservation(reservation_id)
    held = None if campaign is None else campaign.holds.reservations.get(reservation_id)
    if campaign is None or held is None:
        message = f"no reservation {reservation_id} holds anything"
        raise ApiError(404, Reason.RESERVATION_NOT_FOUND.value, message)
    return {
        "reservation_id": reservation_id,
        "campaign_id": campaign.id,
        "code": held.code,
        "contact_id": held.contact_id,
        "currency": held.currency,
        "amount": held.amount,
        "discount": held.discount,
        "total": held.total,
        "expires_at": held.expires_at,
    }

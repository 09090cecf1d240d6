"""`/v1/reservations`: hold one use of a code for a shopper's cart during checkout. The use
cases are `services/coupons/service/reservations.py`; these routes parse, call and answer."""

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from services.coupons.api import checkout as checkout_api
from services.coupons.api.auth import require
from services.coupons.api.commands import call_of, runtime_of
from services.coupons.api.params import RedemptionPath, RequiredIdempotencyKey
from services.coupons.service import reservations
from services.coupons.service.checkout_models import Reservation, ReservationRequest

router = APIRouter(
    prefix="/v1/reservations", tags=["checkout"], dependencies=[Depends(require("checkout"))]
)


@router.post(
    "",
    status_code=201,
    response_model=Reservation,
    responses=checkout_api.ERRORS,
    openapi_extra=checkout_api.SHOPPER_ADDRESS_DOC,
)
async def reserve(
    body: ReservationRequest,
    request: Request,
    response: Response,
    idempotency_key: RequiredIdempotencyKey,
) -> dict[str, Any]:
    """Hold one use of the code for this customer and cart, checked as a redemption is. The
    same `Idempotency-Key` and body give the same reservation."""
    address = checkout_api.shopper_address(request.headers)
    held = await reservations.reserve(call_of(request), body, idempotency_key, address)
    response.headers["Location"] = f"/v1/reservations/{held['reservation_id']}"
    return held


@router.get("/{reservation_id}", response_model=Reservation, responses=checkout_api.ERRORS)
async def get_reservation(reservation_id: RedemptionPath, request: Request) -> dict[str, Any]:
    """A reservation while it holds; `404 reservation_not_found` once redeemed, released or
    expired."""
    return reservations.held(runtime_of(request), reservation_id)


@router.delete("/{reservation_id}", response_model=Reservation, responses=checkout_api.ERRORS)
async def release(reservation_id: RedemptionPath, request: Request) -> dict[str, Any]:
    """Give the reservation's hold back. Retrying is safe."""
    return await reservations.release(call_of(request), reservation_id)

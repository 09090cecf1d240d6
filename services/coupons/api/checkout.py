"""Checkout over HTTP: validate codes against a cart, redeem them, reverse a redemption. The
use cases are `services/coupons/service/checkout.py`; these routes parse, call and answer.

`POST /v1/validations` and `POST /v1/redemptions` are served by the checkout lane
(checkout_lane.py), which calls the same use cases; FastAPI declares and documents them here
(and answers `405` to their other methods)."""

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from services.coupons.api.auth import require
from services.coupons.api.commands import call_of, runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.api.params import IdempotencyKey, RedemptionPath, RequiredIdempotencyKey
from services.coupons.domain.guessing import shopper_network
from services.coupons.service import checkout
from services.coupons.service.checkout_models import (
    Redemption,
    RedemptionRequest,
    RedemptionResult,
    ReversalRequest,
    ValidationAnswer,
    ValidationRequest,
    ValidationResult,
)

router = APIRouter(prefix="/v1", tags=["checkout"], dependencies=[Depends(require("checkout"))])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 429, 503)
}
SHOPPER_ADDRESS = "x-shopper-address"
SHOPPER_ADDRESS_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Shopper-Address",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 45},
            "description": "the shopper's own IP address, as the merchant's checkout saw it: "
            "guessing is throttled per contact and per shopper address (IPv6: per /64)",
        }
    ]
}


def shopper_address(headers: Mapping[str, str]) -> str | None:
    """The network of the `X-Shopper-Address` header (None without it), whom guesses count
    against; `422` naming the header when it is not an IP address."""
    raw = headers.get(SHOPPER_ADDRESS)
    try:
        return None if raw is None else shopper_network(raw)
    except ValueError:
        field = f"header.{SHOPPER_ADDRESS}"
        raise ApiError(422, "invalid_request", f"{field}: not an IP address", field=field) from None


@router.post(
    "/validations",
    response_model=ValidationResult,
    responses=ERRORS,
    openapi_extra=SHOPPER_ADDRESS_DOC,
)
async def validate(body: ValidationRequest, request: Request) -> ValidationAnswer:
    """Would these codes apply to this cart for this customer, and for how much? Changes
    nothing. A code that does not apply answers `valid: false` with the refusal's reason."""
    return await checkout.validate(call_of(request), body, shopper_address(request.headers))


@router.post(
    "/redemptions",
    status_code=201,
    response_model=RedemptionResult,
    responses=ERRORS,
    openapi_extra=SHOPPER_ADDRESS_DOC,
)
async def redeem(
    body: RedemptionRequest,
    request: Request,
    response: Response,
    idempotency_key: RequiredIdempotencyKey,
) -> RedemptionResult:
    """Redeem a code, or several (each campaign must allow stacking). Requires an
    `Idempotency-Key`: the same key and body give the same answer and one redemption; the same
    key with another body is refused. With several codes, a refusal of any one reverses the
    ones already redeemed, so an order gets all its codes or none."""
    address = shopper_address(request.headers)
    redeemed = await checkout.redeem(call_of(request), body, idempotency_key, address)
    response.headers["Location"] = redemption_location(redeemed)
    return redeemed


def redemption_location(redeemed: RedemptionResult) -> str:
    return f"/v1/redemptions/{redeemed.redemption_id}"


@router.get("/redemptions/{redemption_id}", response_model=Redemption, responses=ERRORS)
async def get_redemption(redemption_id: RedemptionPath, request: Request) -> dict[str, Any]:
    return await checkout.redemption(runtime_of(request), redemption_id)


@router.post("/redemptions/{redemption_id}/reversal", response_model=Redemption, responses=ERRORS)
async def reverse(
    redemption_id: RedemptionPath,
    body: ReversalRequest,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Reverse a redemption (a refund or cancellation): its limits and budget are released.
    Retrying is safe: without an `Idempotency-Key`, the key is derived from the redemption."""
    return await checkout.reverse(call_of(request), redemption_id, body.reason, idempotency_key)

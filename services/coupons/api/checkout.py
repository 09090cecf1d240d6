"""Checkout: validate a code against a cart, redeem it, reverse a redemption.

The client sends a code and a cart, never an amount: the discount is computed by the same
domain logic the decider runs. A validation decides against the campaigns projection and
appends nothing; a redemption is decided by the campaign's single writer, in order."""

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import NAMESPACE_URL, uuid5

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter
from pyrsistent import pmap

from contracts.checkout import Cart, Customer
from contracts.commands import OrderRef, RedeemCode, ReverseRedemption
from contracts.events import CodeRedeemed, CommandRejected
from contracts.money import Discount
from contracts.reasons import Reason
from contracts.rules import Duration, Eligibility, Limits, Validity
from projections import campaigns, codes
from services.coupons.api.auth import require
from services.coupons.api.commands import execute, runtime_of
from services.coupons.api.errors import ApiError, ErrorBody, ErrorResponse
from services.coupons.domain import campaign as aggregate
from services.coupons.domain.codes import normalise

router = APIRouter(prefix="/v1", tags=["checkout"], dependencies=[Depends(require("checkout"))])

REDEMPTION_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/redemption")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 429, 503)
}
DISCOUNT = TypeAdapter(Discount)


class ValidationRequest(BaseModel):
    code: Annotated[str, Field(min_length=1, max_length=100)]
    customer: Customer
    cart: Cart


class RedemptionRequest(ValidationRequest):
    order_ref: OrderRef


class ValidationResult(BaseModel):
    valid: bool
    code: str
    campaign_id: str | None
    amount: int
    discount: int
    total: int
    refusal: ErrorBody | None


class Redemption(BaseModel):
    redemption_id: str
    campaign_id: str
    code: str
    contact_id: str
    order_ref: str
    currency: str
    amount: int
    discount: int
    total: int
    redeemed_at: AwareDatetime
    reversed_at: AwareDatetime | None
    reversal_reason: str | None


class ReversalRequest(BaseModel):
    reason: Annotated[str, Field(max_length=500)] = ""


@router.post("/validations", response_model=ValidationResult, responses=ERRORS)
async def validate(body: ValidationRequest, request: Request) -> ValidationResult:
    """Would this code apply to this cart for this customer, and for how much? Changes
    nothing. A code that does not apply answers `valid: false` with the refusal's reason."""
    caller = _throttled(request)
    code = normalise(body.code)
    command = RedeemCode(
        campaign_id="validation",
        redemption_id="validation",
        code=code if code.isalnum() and 3 <= len(code) <= 64 else "INVALID",
        customer=body.customer,
        cart=body.cart,
        order_ref="validation",
    )
    state = await _campaign_state(request, code, body.customer.contact_id)
    if state is None:
        events: list[Any] = [_unknown(command)]
    else:
        events = aggregate.decide(
            state, command.model_copy(update={"campaign_id": state.id}), _now()
        )
    outcome = events[-1]
    if isinstance(outcome, CodeRedeemed):
        return ValidationResult(
            valid=True,
            code=code,
            campaign_id=outcome.campaign_id,
            amount=outcome.amount,
            discount=outcome.discount,
            total=outcome.total,
            refusal=None,
        )
    assert isinstance(outcome, CommandRejected)
    request.app.state.throttle.failed(caller)
    return ValidationResult(
        valid=False,
        code=code,
        campaign_id=state.id if state else None,
        amount=body.cart.amount,
        discount=0,
        total=body.cart.amount,
        refusal=ErrorBody(code=outcome.reason.value, message=outcome.detail),
    )


@router.post("/redemptions", status_code=201, response_model=Redemption, responses=ERRORS)
async def redeem(
    body: RedemptionRequest,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str, Header(min_length=1, max_length=255)],
) -> dict[str, Any]:
    """Redeem a code. Requires an `Idempotency-Key`: the same key and body give the same
    answer and one redemption; the same key with another body is refused."""
    caller = _throttled(request)
    code = normalise(body.code)
    async with runtime_of(request).pool.acquire() as conn:
        campaign_id = await codes.campaign_of(conn, code)
    if campaign_id is None:
        request.app.state.throttle.failed(caller)
        raise ApiError(404, Reason.UNKNOWN_CODE.value, "no such code", field="code")
    redemption_id = str(uuid5(REDEMPTION_NAMESPACE, f"{campaign_id}:{idempotency_key}"))
    command = RedeemCode(
        campaign_id=campaign_id,
        redemption_id=redemption_id,
        code=code,
        customer=body.customer,
        cart=body.cart,
        order_ref=body.order_ref,
    )
    try:
        await execute(request, campaign_id, command, idempotency_key)
    except ApiError as refused:
        if refused.status < 500:
            request.app.state.throttle.failed(caller)
        raise
    response.headers["Location"] = f"/v1/redemptions/{redemption_id}"
    return await _redemption(request, redemption_id)


@router.get("/redemptions/{redemption_id}", response_model=Redemption, responses=ERRORS)
async def get_redemption(redemption_id: str, request: Request) -> dict[str, Any]:
    return await _redemption(request, redemption_id)


@router.post("/redemptions/{redemption_id}/reversal", response_model=Redemption, responses=ERRORS)
async def reverse(
    redemption_id: str,
    body: ReversalRequest,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> dict[str, Any]:
    """Reverse a redemption (a refund or cancellation): its limits and budget are released.
    Retrying is safe: without an `Idempotency-Key`, the key is derived from the redemption."""
    found = await _redemption(request, redemption_id)
    command = ReverseRedemption(
        campaign_id=found["campaign_id"], redemption_id=redemption_id, reason=body.reason
    )
    await execute(
        request, found["campaign_id"], command, idempotency_key or f"reverse:{redemption_id}"
    )
    return await _redemption(request, redemption_id)


async def _redemption(request: Request, redemption_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        row = await campaigns.redemption(conn, redemption_id)
    if row is None:
        raise ApiError(404, Reason.REDEMPTION_NOT_FOUND.value, f"no redemption {redemption_id}")
    return row


async def _campaign_state(
    request: Request, code: str, contact_id: str
) -> aggregate.Campaign | None:
    """The campaign of `code` as the projection sees it, with this contact's usage."""
    async with runtime_of(request).pool.acquire() as conn:
        campaign_id = await codes.campaign_of(conn, code)
        row = await campaigns.get(conn, campaign_id) if campaign_id else None
        if row is None:
            return None
        used = await campaigns.contact_redemptions(conn, row["id"], contact_id)
    return aggregate.Campaign(
        id=row["id"],
        name=row["name"],
        discount=DISCOUNT.validate_python(row["discount"]),
        defined_at=row["defined_at"],
        code=row["code"],
        status=row["status"],
        duration=Duration.model_validate(row["duration"]),
        validity=Validity.model_validate(row["validity"]),
        limits=Limits.model_validate(row["limits"]),
        eligibility=Eligibility.model_validate(row["eligibility"]),
        redemptions=row["usage"]["redemptions"],
        budget_spent=row["usage"]["budget_spent"],
        per_contact=pmap({contact_id: used}),
        per_code=pmap({row["code"]: row["usage"]["redemptions"]}),
    )


def _unknown(command: RedeemCode) -> CommandRejected:
    return CommandRejected(
        campaign_id="unknown",
        command_type=command.type,
        reason=Reason.UNKNOWN_CODE,
        detail="no such code",
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _throttled(request: Request) -> tuple[str, str]:
    """The caller (API key, client address); refuses with 429 after too many failures."""
    caller = (
        str(getattr(request.state, "actor", "")),
        request.client.host if request.client else "",
    )
    wait = request.app.state.throttle.retry_after(caller)
    if wait is not None:
        raise ApiError(
            429,
            "too_many_failures",
            "too many failed validations or redemptions; wait before trying again",
            headers={"Retry-After": str(wait)},
        )
    return caller

"""Checkout: validate a code against a cart, redeem it, reverse a redemption.

The client sends a code and a cart, never an amount: the discount is computed by the same
domain logic the decider runs. A validation decides against the campaigns projection and
appends nothing; a redemption is decided by the campaign's single writer, in order."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import NAMESPACE_URL, uuid5

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from contracts.bounds import Id64, Label, Note
from contracts.checkout import Cart, Customer
from contracts.commands import MAX_CODES, OrderRef, RedeemCode, ReverseRedemption
from contracts.events import CodeRedeemed, CommandRejected
from contracts.reasons import Reason
from projections import campaigns
from services.coupons.api.auth import require
from services.coupons.api.commands import caught_up, execute, runtime_of
from services.coupons.api.errors import ApiError, ErrorBody, ErrorResponse
from services.coupons.api.params import IdempotencyKey, RedemptionPath, RequiredIdempotencyKey
from services.coupons.contacts.lookup import member_segments
from services.coupons.domain import campaign as aggregate
from services.coupons.domain.codes import normalise
from services.coupons.domain.guessing import GUESSES, retry_after, shopper_network
from services.coupons.store import code_claims

# `POST /v1/validations` and `POST /v1/redemptions` are served by the checkout lane
# (checkout_lane.py), which calls these same handlers; FastAPI declares and documents them.
router = APIRouter(prefix="/v1", tags=["checkout"], dependencies=[Depends(require("checkout"))])

REDEMPTION_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/redemption")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 429, 503)
}
_CODE = re.compile(r"[A-Z0-9]{3,64}")
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


class ValidationRequest(BaseModel):
    code: Annotated[Label | None, Field(min_length=1, max_length=100)] = None
    codes: Annotated[
        list[Annotated[Label, Field(min_length=1, max_length=100)]] | None,
        Field(min_length=1, max_length=MAX_CODES, description="several codes, applied in order"),
    ] = None
    customer: Customer
    cart: Cart

    def normalised_codes(self) -> list[str]:
        """`code` or `codes` (not both), normalised; the same code twice is refused."""
        if (self.code is None) == (self.codes is None):
            raise ApiError(422, "invalid_request", "send either code or codes", field="code")
        found = [normalise(c) for c in (self.codes or [self.code or ""])]
        if len(set(found)) != len(found):
            raise ApiError(422, "invalid_request", "a code appears twice", field="codes")
        return found


class RedemptionRequest(ValidationRequest):
    order_ref: OrderRef
    reservation_id: Id64 | None = None
    """Redeem what this reservation (`POST /v1/reservations`) holds, for its code only."""


class CodeResult(BaseModel):
    code: str
    campaign_id: str | None
    valid: bool
    discount: int
    refusal: ErrorBody | None


class ValidationResult(BaseModel):
    """`valid` when every code applies; `discount` and `total` are for the whole cart, and
    `code`, `campaign_id` and `refusal` are the first code's (or the first refusal)."""

    valid: bool
    code: str
    campaign_id: str | None
    amount: int
    discount: int
    total: int
    refusal: ErrorBody | None
    codes: list[CodeResult]


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


class RedemptionResult(Redemption):
    """The first code's redemption; with several codes, the others in `stacked`, in order,
    and the last one's `total` is what the customer pays."""

    stacked: list[Redemption]


class ReversalRequest(BaseModel):
    reason: Note = ""


@router.post(
    "/validations",
    response_model=ValidationResult,
    responses=ERRORS,
    openapi_extra=SHOPPER_ADDRESS_DOC,
)
async def validate(body: ValidationRequest, request: Request) -> ValidationResult:
    """Would these codes apply to this cart for this customer, and for how much? Changes
    nothing. A code that does not apply answers `valid: false` with the refusal's reason."""
    shopper = throttled(request, body.customer)
    codes = body.normalised_codes()
    states = [await campaign_of(request, code) for code in codes]
    segments = await segments_of(request, body.customer, states)
    now, already_off, results = _now(), 0, []
    for i, (code, state) in enumerate(zip(codes, states, strict=True)):
        others = _others_stackable(states, i)
        outcome = _assess(state, code, body, others, already_off, now, segments)
        results.append(_result(code, state, outcome))
        already_off += results[-1].discount
    await guessed(request, shopper, sum(r.refusal.code in GUESSES for r in results if r.refusal))
    refusal = next((r.refusal for r in results if r.refusal is not None), None)
    if refusal is not None:
        already_off = 0
    return ValidationResult(
        valid=refusal is None,
        code=codes[0],
        campaign_id=results[0].campaign_id,
        amount=body.cart.amount,
        discount=already_off,
        total=body.cart.amount - already_off,
        refusal=refusal,
        codes=results,
    )


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
) -> dict[str, Any]:
    """Redeem a code, or several (each campaign must allow stacking). Requires an
    `Idempotency-Key`: the same key and body give the same answer and one redemption; the same
    key with another body is refused. With several codes, a refusal of any one reverses the
    ones already redeemed, so an order gets all its codes or none."""
    shopper = throttled(request, body.customer)
    codes = body.normalised_codes()
    if body.reservation_id is not None and len(codes) > 1:
        raise ApiError(422, "invalid_request", "a reservation is for one code", field="codes")
    states = [await campaign_of(request, code) for code in codes]
    await guessed(request, shopper, states.count(None))
    for code, state in zip(codes, states, strict=True):
        if state is None:
            field = "code" if body.code else "codes"
            raise ApiError(404, Reason.UNKNOWN_CODE.value, f"no such code {code}", field=field)
    campaigns_of = [state.id for state in states if state is not None]
    segments = await segments_of(request, body.customer, states)
    done: list[dict[str, Any]] = []
    for i, (code, campaign_id) in enumerate(zip(codes, campaigns_of, strict=True)):
        key = idempotency_key if len(codes) == 1 else f"{idempotency_key}:{i}"
        command = RedeemCode(
            campaign_id=campaign_id,
            redemption_id=str(uuid5(REDEMPTION_NAMESPACE, f"{campaign_id}:{key}")),
            code=code,
            customer=body.customer,
            cart=body.cart,
            order_ref=body.order_ref,
            other_codes_stackable=_others_stackable(states, i),
            already_off=sum(row["discount"] for row in done),
            reservation_id=body.reservation_id,
            segments=segments,
        )
        try:
            reply = await execute(request, campaign_id, command, key, read_back=False)
        except ApiError as refused:
            if refused.status < 500:
                await _undo(request, done, f"stacked code {code} refused: {refused.code}")
            await guessed(request, shopper, int(refused.code in GUESSES))
            raise
        if reply.redeemed is None or reply.decided_at is None:  # a retry: from the ledger
            done.append(await _redemption(request, command.redemption_id))
        else:
            done.append(_redeemed(reply.redeemed, reply.decided_at))
    response.headers["Location"] = f"/v1/redemptions/{done[0]['redemption_id']}"
    return {**done[0], "stacked": done[1:]}


async def _undo(request: Request, done: list[dict[str, Any]], reason: str) -> None:
    """Reverse the redemptions of an order whose next code was refused. Retrying the order
    reverses nothing twice: a second reversal is refused and ignored."""
    for row in done:
        command = ReverseRedemption(
            campaign_id=row["campaign_id"], redemption_id=row["redemption_id"], reason=reason
        )
        try:
            await execute(request, row["campaign_id"], command, f"undo:{row['redemption_id']}")
        except ApiError as refused:
            if refused.code != Reason.ALREADY_REVERSED.value:
                raise


@router.get("/redemptions/{redemption_id}", response_model=Redemption, responses=ERRORS)
async def get_redemption(redemption_id: RedemptionPath, request: Request) -> dict[str, Any]:
    return await _redemption(request, redemption_id)


@router.post("/redemptions/{redemption_id}/reversal", response_model=Redemption, responses=ERRORS)
async def reverse(
    redemption_id: RedemptionPath,
    body: ReversalRequest,
    request: Request,
    idempotency_key: IdempotencyKey = None,
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
    """The redemption from the ledger. A redemption is answered from the decider's reply
    before it is projected, so a miss waits for the projection to catch up and reads again."""
    pool = runtime_of(request).pool
    async with pool.acquire() as conn:
        row = await campaigns.redemption(conn, redemption_id)
    if row is None:
        await caught_up(request)
        async with pool.acquire() as conn:
            row = await campaigns.redemption(conn, redemption_id)
    if row is None:
        raise ApiError(404, Reason.REDEMPTION_NOT_FOUND.value, f"no redemption {redemption_id}")
    return row


def _redeemed(event: CodeRedeemed, at: datetime) -> dict[str, Any]:
    """The ledger row the `campaigns` projection will write for this redemption."""
    return {
        **event.model_dump(exclude={"type", "source"}),
        "redeemed_at": at,
        "reversed_at": None,
        "reversal_reason": None,
    }


async def campaign_of(request: Request, code: str) -> aggregate.Campaign | None:
    """The campaign of `code` from the in-memory view. A code the view does not know yet but
    PostgreSQL's registry does (another replica just created it) is waited for."""
    view = runtime_of(request).view
    found = view.campaign_of(code)
    if found is not None or not _CODE.fullmatch(code):
        return found
    async with runtime_of(request).pool.acquire() as conn:
        campaign_id = await code_claims.campaign_of(conn, code)
    if campaign_id is None:
        return None
    return await view.wait_for_code(code, runtime_of(request).settings.command_timeout_s)


def _result(
    code: str, state: aggregate.Campaign | None, outcome: CodeRedeemed | CommandRejected
) -> CodeResult:
    campaign_id = state.id if state else None
    if isinstance(outcome, CodeRedeemed):
        return CodeResult(
            code=code, campaign_id=campaign_id, valid=True, discount=outcome.discount, refusal=None
        )
    refusal = ErrorBody(code=outcome.reason.value, message=outcome.detail)
    return CodeResult(code=code, campaign_id=campaign_id, valid=False, discount=0, refusal=refusal)


def _others_stackable(states: list[aggregate.Campaign | None], i: int) -> tuple[bool, ...]:
    """The `stackable` flags of every code but the i-th (an unknown code does not count)."""
    return tuple(s.eligibility.stackable for j, s in enumerate(states) if j != i and s)


def _assess(
    state: aggregate.Campaign | None,
    code: str,
    body: ValidationRequest,
    others: tuple[bool, ...],
    already_off: int,
    now: datetime,
    segments: tuple[str, ...] = (),
) -> CodeRedeemed | CommandRejected:
    """What the decider would answer now, without appending anything."""
    if state is None:
        return CommandRejected(
            campaign_id="unknown",
            command_type=RedeemCode.model_fields["type"].default,
            reason=Reason.UNKNOWN_CODE,
            detail="no such code",
        )
    command = RedeemCode.model_construct(  # from parts validated already: no second pass
        campaign_id=state.id,
        redemption_id="validation",
        code=code,
        customer=body.customer,
        cart=body.cart,
        order_ref="validation",
        other_codes_stackable=others,
        already_off=already_off,
        segments=segments,
    )
    outcome = aggregate.decide(state, command, now)[-1]
    assert isinstance(outcome, CodeRedeemed | CommandRejected)
    return outcome


async def segments_of(
    request: Request, customer: Customer, states: list[aggregate.Campaign | None]
) -> tuple[str, ...]:
    """The segments the campaigns name that the customer is in: looked up by the server."""
    rules = [state.eligibility for state in states if state is not None]
    return await member_segments(runtime_of(request).pool, customer.contact_id, rules)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Shopper:
    """Whom a checkout call's guesses count against (domain.guessing.subjects_of)."""

    key: str
    contact_id: str
    address: str | None


def throttled(request: Request, customer: Customer) -> _Shopper:
    """The call's shopper; refuses with 429 while the contact, the shopper's address (the
    `X-Shopper-Address` header) or the API key is blocked for guessing."""
    raw = request.headers.get(SHOPPER_ADDRESS)
    try:
        address = None if raw is None else shopper_network(raw)
    except ValueError:
        field = f"header.{SHOPPER_ADDRESS}"
        raise ApiError(422, "invalid_request", f"{field}: not an IP address", field=field) from None
    shopper = _Shopper(str(getattr(request.state, "actor", "")), customer.contact_id, address)
    wait = runtime_of(request).throttle.wait_s(shopper.key, shopper.contact_id, shopper.address)
    if wait is not None:
        raise _too_many_failures(wait)
    return shopper


async def guessed(request: Request, shopper: _Shopper, guesses: int) -> None:
    """Count guessing refusals; 429 instead of the answer if they went past an allowance."""
    if guesses == 0:
        return
    throttle = runtime_of(request).throttle
    wait = await throttle.failed(shopper.key, shopper.contact_id, shopper.address, guesses)
    if wait is not None:
        raise _too_many_failures(wait)


def _too_many_failures(wait_s: float) -> ApiError:
    return ApiError(
        429,
        "too_many_failures",
        "too many unknown codes or codes of other contacts; wait before trying again",
        headers={"Retry-After": str(retry_after(wait_s))},
    )

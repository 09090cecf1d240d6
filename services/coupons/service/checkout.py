"""Checkout: validate codes against a cart, redeem them, reverse a redemption.

The client sends a code and a cart, never an amount: the discount is computed by the same
domain logic the decider runs. A validation decides against the in-memory campaign view and
appends nothing; a redemption is decided by the campaign's single writer, in order."""

from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from contracts.commands import RedeemCode, ReverseRedemption
from contracts.events import CodeRedeemed
from contracts.reasons import Reason
from projections import campaigns
from services.coupons.domain import campaign as aggregate
from services.coupons.domain import refusals
from services.coupons.domain.eligibility import NO_SUCH_CODE, Refusal
from services.coupons.domain.guessing import GUESSES
from services.coupons.runtime import Runtime
from services.coupons.service.calls import Call
from services.coupons.service.checkout_lookups import (
    campaign_of,
    guessed,
    segments_of,
    throttled,
)
from services.coupons.service.checkout_models import (
    CodeAnswer,
    RedemptionRequest,
    RedemptionResult,
    ValidationAnswer,
    ValidationRequest,
)
from services.coupons.service.commands import caught_up, decide
from services.coupons.service.refusals import ErrorBody, Refused

REDEMPTION_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/redemption")


async def validate(call: Call, body: ValidationRequest, address: str | None) -> ValidationAnswer:
    """Would these codes apply to this cart for this customer, and for how much? Changes
    nothing. A code that does not apply answers `valid: false` with the refusal's reason.
    `address` is the network of the shopper's own address, if the merchant sent it.

    The answer is a `ValidationResult` as plain data (`ValidationAnswer`), not the model:
    building the two models (validating what this function has just computed) cost 5 of a
    validation's 35 µs of CPU (`bench/lane.py`), the dictionaries a tenth of that
    (docs/performance/checkout.md). The lane serialises either alike."""
    shopper = throttled(call, body.customer, address)
    codes = body.normalised_codes()
    states = [await campaign_of(call.runtime, code) for code in codes]
    segments = await segments_of(call.runtime, body.customer, states)
    now, already_off = datetime.now(UTC), 0
    results: list[CodeAnswer] = []
    refused: list[ErrorBody] = []
    for i, (code, state) in enumerate(zip(codes, states, strict=True)):
        # what the decider would answer now (its `refusals.assess`, which a redemption is
        # decided on), without a command, an event or anything appended
        outcome: refusals.Priced | Refusal = NO_SUCH_CODE
        campaign_id = None
        if state is not None:
            others = _others_stackable(states, i)
            outcome = refusals.assess(
                state, code, body.customer, body.cart, now, others, already_off, segments
            )
            campaign_id = state.id
        if isinstance(outcome, refusals.Priced):
            already_off += outcome.discount
            discount, refusal = outcome.discount, None
        else:
            discount, refusal = 0, ErrorBody(code=outcome.reason.value, message=outcome.detail)
            refused.append(refusal)
        results.append(
            {
                "code": code,
                "campaign_id": campaign_id,
                "valid": refusal is None,
                "discount": discount,
                "refusal": refusal,
            }
        )
    if refused:  # counted as guesses if they are (`domain.guessing.GUESSES`)
        await guessed(call, shopper, sum(r.code in GUESSES for r in refused))
        already_off = 0
    return {
        "valid": not refused,
        "code": codes[0],
        "campaign_id": results[0]["campaign_id"],
        "amount": body.cart.amount,
        "discount": already_off,
        "total": body.cart.amount - already_off,
        "refusal": refused[0] if refused else None,
        "codes": results,
    }


async def redeem(
    call: Call, body: RedemptionRequest, idempotency_key: str, address: str | None
) -> RedemptionResult:
    """Redeem a code, or several (each campaign must allow stacking). The same key and body
    give the same answer and one redemption; the same key with another body is refused. With
    several codes, a refusal of any one reverses the ones already redeemed, so an order gets
    all its codes or none."""
    shopper = throttled(call, body.customer, address)
    codes = body.normalised_codes()
    if body.reservation_id is not None and len(codes) > 1:
        raise Refused("invalid_request", "a reservation is for one code", field="codes")
    states = [await campaign_of(call.runtime, code) for code in codes]
    await guessed(call, shopper, states.count(None))
    for code, state in zip(codes, states, strict=True):
        if state is None:
            field = "code" if body.code else "codes"
            raise Refused(Reason.UNKNOWN_CODE.value, f"no such code {code}", field=field)
    campaigns_of = [state.id for state in states if state is not None]
    segments = await segments_of(call.runtime, body.customer, states)
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
            reply = await decide(call, campaign_id, command, key, read_back=False)
        except Refused as refused:
            if refused.retry_after_s is None:  # refused for good, not "try again"
                await _undo(call, done, f"stacked code {code} refused: {refused.code}")
            await guessed(call, shopper, int(refused.code in GUESSES))
            raise
        if reply.redeemed is None or reply.decided_at is None:  # a retry: from the ledger
            done.append(await redemption(call.runtime, command.redemption_id, key))
        else:
            done.append(_redeemed(reply.redeemed, reply.decided_at))
    return RedemptionResult.model_validate({**done[0], "stacked": done[1:]})


async def _undo(call: Call, done: list[dict[str, Any]], reason: str) -> None:
    """Reverse the redemptions of an order whose next code was refused. Retrying the order
    reverses nothing twice: a second reversal is refused and ignored."""
    for row in done:
        command = ReverseRedemption(
            campaign_id=row["campaign_id"], redemption_id=row["redemption_id"], reason=reason
        )
        try:
            await decide(call, row["campaign_id"], command, f"undo:{row['redemption_id']}")
        except Refused as refused:
            if refused.code != Reason.ALREADY_REVERSED.value:
                raise


async def reverse(
    call: Call, redemption_id: str, reason: str, idempotency_key: str | None
) -> dict[str, Any]:
    """Reverse a redemption (a refund or cancellation): its limits and budget are released.
    Retrying is safe: without an idempotency key, the key is derived from the redemption."""
    found = await redemption(call.runtime, redemption_id)
    command = ReverseRedemption(
        campaign_id=found["campaign_id"], redemption_id=redemption_id, reason=reason
    )
    key = idempotency_key or f"reverse:{redemption_id}"
    await decide(call, found["campaign_id"], command, key)
    return await redemption(call.runtime, redemption_id)


async def redemption(
    runtime: Runtime, redemption_id: str, accepted_under: str | None = None
) -> dict[str, Any]:
    """The redemption from the ledger. A redemption is answered from the decider's reply
    before it is projected, so a miss waits for the projection to catch up and reads again.
    `accepted_under`: the idempotency key of a retry the decider answered as accepted, so
    the redemption exists: a miss then is the read model lagging (seen right after a broker
    restart), answered `503 projection_lagging` to retry with that key, never a 404."""
    async with runtime.pool.acquire() as conn:
        row = await campaigns.redemption(conn, redemption_id)
    if row is None:
        await caught_up(runtime)
        async with runtime.pool.acquire() as conn:
            row = await campaigns.redemption(conn, redemption_id)
    if row is None and accepted_under is not None:
        message = "accepted, not yet readable; retry with the same Idempotency-Key"
        raise Refused(
            "projection_lagging", message, retry_after_s=1, idempotency_key=accepted_under
        )
    if row is None:
        raise Refused(Reason.REDEMPTION_NOT_FOUND.value, f"no redemption {redemption_id}")
    return row


def _redeemed(event: CodeRedeemed, at: datetime) -> dict[str, Any]:
    """The ledger row the `campaigns` projection will write for this redemption."""
    return {
        **event.model_dump(exclude={"type", "source"}),
        "redeemed_at": at,
        "reversed_at": None,
        "reversal_reason": None,
    }


def _others_stackable(states: list[aggregate.Campaign | None], i: int) -> tuple[bool, ...]:
    """The `stackable` flags of every code but the i-th (an unknown code does not count)."""
    if len(states) == 1:  # the usual order: one code
        return ()
    return tuple(s.eligibility.stackable for j, s in enumerate(states) if j != i and s)

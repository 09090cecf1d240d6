"""How a campaign refuses: the rejection event, and why a use of a code is refused (the rules
of `domain.eligibility`, in their documented order, against the campaign's state), or else
its price (`assess`, which the decider and a validation share)."""

from datetime import datetime
from typing import NamedTuple

from contracts import bounds
from contracts.checkout import Cart, Customer
from contracts.commands import Command, RedeemCode, ReserveCode
from contracts.events import CommandRejected
from contracts.reasons import Reason
from services.coupons.domain import eligibility as checks
from services.coupons.domain import pricing
from services.coupons.domain.campaign_state import Campaign

SPENT_TOO_MUCH = "the campaign's discount given would pass 10^18 minor units"
_NO_SEGMENTS: frozenset[str] = frozenset()


def rejected(command: Command, reason: Reason, detail: str) -> CommandRejected:
    return CommandRejected(
        campaign_id=command.campaign_id, command_type=command.type, reason=reason, detail=detail
    )


class Priced(NamedTuple):
    """A use of a code that no rule refuses: its discount and the total after it. A named
    tuple, immutable too, made for about half the CPU of a frozen dataclass (which sets each
    field through `object.__setattr__`): one is made on every validation
    (docs/performance/checkout.md, "One layer for the checkout lane")."""

    discount: int
    total: int


def assess(
    campaign: Campaign,
    code: str,
    customer: Customer,
    cart: Cart,
    now: datetime,
    other_codes_stackable: tuple[bool, ...] = (),
    already_off: int = 0,
    segments: tuple[str, ...] = (),
    held_budget: int = 0,
) -> Priced | checks.Refusal:
    """Why this campaign refuses this use of `code` (`domain.eligibility` fixes the order),
    or, when nothing does, its price: what a redemption is decided on and what a validation
    answers. Refused too when the discount would pass what a campaign can count (with
    `held_budget`, the discount reservations hold)."""
    if not campaign.owns(code):
        return checks.Refusal(Reason.UNKNOWN_CODE, "no such code in this campaign")
    attempt = checks.Attempt(
        cart=cart,
        customer=customer,
        now=now,
        other_codes_stackable=other_codes_stackable,
        already_off=already_off,
        segments=frozenset(segments) if segments else _NO_SEGMENTS,
    )
    offer, usage = campaign.terms(code)
    discount = checks.assess(offer, usage, attempt)
    if isinstance(discount, checks.Refusal):
        return discount
    if campaign.budget_spent + held_budget + discount > bounds.MAX_TOTAL:
        return checks.Refusal(Reason.OUT_OF_RANGE, SPENT_TOO_MUCH)
    return Priced(discount, pricing.total_after(cart, discount, already_off))


def priced(
    campaign: Campaign, command: RedeemCode | ReserveCode, now: datetime, held_budget: int = 0
) -> Priced | CommandRejected:
    """A redemption's checks and price (a reservation is checked and priced as one), or the
    rejection (`assess`)."""
    others: tuple[bool, ...] = ()
    already_off = 0
    if isinstance(command, RedeemCode):
        others, already_off = command.other_codes_stackable, command.already_off
    found = assess(
        campaign,
        command.code,
        command.customer,
        command.cart,
        now,
        others,
        already_off,
        command.segments,
        held_budget,
    )
    if isinstance(found, checks.Refusal):
        return rejected(command, found.reason, found.detail)
    return found

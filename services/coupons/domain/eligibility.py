"""May this customer redeem this code on this cart? Small named checks, each returning a
`Refusal` with a stable reason or None, and `assess`, which runs them in a fixed order and
gives the discount when none refuses.

Order (the first refusal wins), from what nobody can change to what the customer can fix:

 1. unknown_code              the code does not exist
 2. bound_to_another_contact  before anything else is revealed to a stranger holding it
 3. ended, paused, draft      the campaign's state (a draft: not_started)
 4. not_started, expired      the redemption window
 5. currency_mismatch         the amounts below would not be comparable
 6. exhausted, code_exhausted, per_contact_limit, budget_exhausted   (in that order)
 7. first_purchase_only, email_domain_not_allowed,
    not_in_segment, excluded_segment                                 who the customer is
 8. not_stackable, not_applicable, below_minimum                     what is in the cart

So a customer is never told to change their cart for a code that is used up or not theirs.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

from contracts.checkout import Cart, Customer
from contracts.money import Discount
from contracts.reasons import Reason
from contracts.rules import Eligibility, Limits, Validity
from services.coupons.domain.pricing import applies_to, bound_currency, discount_for

CampaignStatus = Literal["draft", "active", "paused", "ended"]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Reason
    detail: str


NO_SUCH_CODE = Refusal(Reason.UNKNOWN_CODE, "no such code")
"""The refusal of a code no campaign knows."""


@dataclass(frozen=True, slots=True)
class Usage:
    """What has been redeemed so far: in the campaign, per contact, with this code, and the
    discount given in total (minor units)."""

    redemptions: int = 0
    per_contact: Mapping[str, int] = field(default_factory=dict)
    per_code: int = 0
    budget_spent: int = 0


@dataclass(frozen=True, slots=True)
class Offer:
    """A known code with its campaign's state and rules. `bound_contact_id` is the contact a
    unique code was distributed to (None: anyone may use it)."""

    status: CampaignStatus
    discount: Discount
    validity: Validity = field(default_factory=Validity)
    limits: Limits = field(default_factory=Limits)
    eligibility: Eligibility = field(default_factory=Eligibility)
    bound_contact_id: str | None = None


class Attempt(NamedTuple):
    """One redemption attempt. `other_codes_stackable` holds the `stackable` flag of every
    other code in the cart; `already_off` is what the codes before this one took off.
    A named tuple, made on every validation (see `refusals.Priced`)."""

    cart: Cart
    customer: Customer
    now: datetime
    other_codes_stackable: tuple[bool, ...] = ()
    already_off: int = 0
    segments: frozenset[str] = frozenset()
    """The segments the customer belongs to (those the rules name), resolved by the server."""


def assess(offer: Offer | None, usage: Usage, attempt: Attempt) -> Refusal | int:
    """The first refusal in the documented order, or the discount (minor units) when none
    refuses: the amount the limits are checked with, so a use is priced once. Each `or`
    chain stops at its first refusal (a `Refusal` is always true)."""
    if offer is None:
        return NO_SUCH_CODE
    rules, cart, customer = offer.eligibility, attempt.cart, attempt.customer
    others = attempt.other_codes_stackable  # none: nothing to stack with (the usual order)
    refused = (
        check_bound_contact(rules, offer.bound_contact_id, customer)
        or check_status(offer.status)
        or check_window(offer.validity, attempt.now)
        or check_currency(offer.discount, cart)
    )
    if refused is not None:
        return refused
    amount = discount_for(offer.discount, cart, rules, attempt.already_off)  # currencies match
    refused = (
        check_limits(offer.limits, usage, customer.contact_id, amount)
        or check_first_purchase(rules, customer)
        or check_email_domain(rules, customer)
        or check_segments(rules, attempt.segments)
        or (check_stacking((rules.stackable, *others)) if others else None)
        or check_products(rules, cart)
        or check_minimum(rules, cart)
    )
    return amount if refused is None else refused


def first_refusal(checks: Iterable[Refusal | None]) -> Refusal | None:
    """The first refusal; later checks are not run when `checks` is lazy."""
    return next((refusal for refusal in checks if refusal is not None), None)


def check_status(status: CampaignStatus) -> Refusal | None:
    if status == "ended":
        return Refusal(Reason.ENDED, "the campaign has ended")
    if status == "paused":
        return Refusal(Reason.PAUSED, "the campaign is paused")
    if status == "draft":
        return Refusal(Reason.NOT_STARTED, "the campaign is a draft")
    return None


def check_window(validity: Validity, now: datetime) -> Refusal | None:
    """`starts_at` is inclusive, `expires_at` exclusive. `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if validity.starts_at is not None and now < validity.starts_at:
        return Refusal(Reason.NOT_STARTED, f"starts at {validity.starts_at.isoformat()}")
    if validity.expires_at is not None and now >= validity.expires_at:
        return Refusal(Reason.EXPIRED, f"expired at {validity.expires_at.isoformat()}")
    return None


def check_currency(discount: Discount, cart: Cart) -> Refusal | None:
    """An amount off, or a capped percentage, only works in its own currency; an uncapped
    percentage works in any."""
    currency = bound_currency(discount)
    if currency is not None and currency != cart.currency:
        return Refusal(Reason.CURRENCY_MISMATCH, f"discount in {currency}, cart in {cart.currency}")
    return None


def check_minimum(eligibility: Eligibility, cart: Cart) -> Refusal | None:
    """Compared with the whole cart total before discount, not only the eligible items."""
    if eligibility.min_amount is not None and cart.amount < eligibility.min_amount:
        return Refusal(Reason.BELOW_MINIMUM, f"cart {cart.amount} below {eligibility.min_amount}")
    return None


def check_products(eligibility: Eligibility, cart: Cart) -> Refusal | None:
    if eligibility.products and not any(applies_to(item, eligibility) for item in cart.items):
        return Refusal(Reason.NOT_APPLICABLE, "no item in the cart is eligible")
    return None


def check_first_purchase(eligibility: Eligibility, customer: Customer) -> Refusal | None:
    """Refused unless the caller says it is the first purchase (unknown counts as no)."""
    if eligibility.first_purchase_only and customer.first_purchase is not True:
        return Refusal(Reason.FIRST_PURCHASE_ONLY, "only for a first purchase")
    return None


def check_email_domain(eligibility: Eligibility, customer: Customer) -> Refusal | None:
    """Exact domain match only: "example.com" does not admit "mail.example.com", so a rule
    cannot be widened by a subdomain anyone could register mail on. No email: refused."""
    if eligibility.email_domains and customer.email_domain not in eligibility.email_domains:
        return Refusal(
            Reason.EMAIL_DOMAIN_NOT_ALLOWED,
            f"email domain {customer.email_domain or '(none)'} is not allowed",
        )
    return None


def check_bound_contact(
    eligibility: Eligibility, bound_contact_id: str | None, customer: Customer
) -> Refusal | None:
    if (
        eligibility.bound_to_contact
        and bound_contact_id is not None
        and bound_contact_id != customer.contact_id
    ):
        return Refusal(Reason.BOUND_TO_ANOTHER_CONTACT, "the code belongs to another contact")
    return None


def check_stacking(stackable_flags: Sequence[bool]) -> Refusal | None:
    """Several codes in one cart only if every one of them is stackable."""
    if len(stackable_flags) > 1 and not all(stackable_flags):
        return Refusal(Reason.NOT_STACKABLE, "a code in the cart cannot be combined")
    return None


def check_limits(
    limits: Limits, usage: Usage, customer_id: str, discount_amount: int
) -> Refusal | None:
    """Budget: refused when this discount would take the total past the budget (or it is
    already spent). We refuse rather than shrink the discount, so a customer never gets less
    than the code promises."""
    if limits.max_redemptions is not None and usage.redemptions >= limits.max_redemptions:
        return Refusal(Reason.EXHAUSTED, f"all {limits.max_redemptions} redemptions used")
    if limits.per_code is not None and usage.per_code >= limits.per_code:
        return Refusal(Reason.CODE_EXHAUSTED, f"code used {usage.per_code} times")
    used = usage.per_contact.get(customer_id, 0)
    if limits.per_contact is not None and used >= limits.per_contact:
        return Refusal(Reason.PER_CONTACT_LIMIT, f"already used {used} times")
    if limits.budget is not None and (
        usage.budget_spent >= limits.budget or usage.budget_spent + discount_amount > limits.budget
    ):
        return Refusal(
            Reason.BUDGET_EXHAUSTED,
            f"{usage.budget_spent} of {limits.budget} spent, {discount_amount} asked",
        )
    return None


def check_segments(eligibility: Eligibility, member_of: frozenset[str]) -> Refusal | None:
    """In at least one of `segments` (when any are named), and in none of
    `excluded_segments`."""
    if eligibility.segments and member_of.isdisjoint(eligibility.segments):
        return Refusal(Reason.NOT_IN_SEGMENT, "the contact is in none of the campaign's segments")
    excluded = sorted(member_of.intersection(eligibility.excluded_segments))
    if excluded:
        return Refusal(Reason.EXCLUDED_SEGMENT, f"the contact is in segment {excluded[0]}")
    return None

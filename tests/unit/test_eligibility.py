from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.checkout import Cart, Customer, LineItem
from contracts.money import AmountOff, PercentOff
from contracts.reasons import Reason as R
from contracts.rules import Duration, Eligibility, Limits, Validity
from services.coupons.domain.eligibility import (
    Attempt,
    Offer,
    Refusal,
    Usage,
    assess,
    check_bound_contact,
    check_currency,
    check_email_domain,
    check_first_purchase,
    check_limits,
    check_minimum,
    check_products,
    check_stacking,
    check_status,
    check_window,
    first_refusal,
)


def evaluate(offer: Offer | None, usage: Usage, attempt: Attempt) -> Refusal | None:
    """`assess`'s refusal, None when the code may be redeemed."""
    found = assess(offer, usage, attempt)
    return found if isinstance(found, Refusal) else None


NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
ANN = Customer(contact_id="ann", email="Ann@Example.com", first_purchase=True)
CART = Cart(
    currency="EUR",
    amount=2_000,
    items=(
        LineItem(product_id="p1", plan_id="pro", amount=500, quantity=2),
        LineItem(product_id="p2", amount=1_000),
    ),
)
TEN_PERCENT = PercentOff(percent_off=Decimal("10"))


def reason(refusal: Refusal | None) -> R | None:
    return None if refusal is None else refusal.reason


def test_status() -> None:
    assert check_status("active") is None
    assert reason(check_status("paused")) == R.PAUSED
    assert reason(check_status("ended")) == R.ENDED
    assert reason(check_status("draft")) == R.NOT_STARTED


def test_a_stranger_holding_a_draft_campaigns_bound_code_is_told_it_is_not_theirs() -> None:
    """`draft` is a status, checked in its place: after the bound contact, not before."""
    offer = Offer(status="draft", discount=TEN_PERCENT, bound_contact_id="bob")
    stranger = Customer(contact_id="eve")
    assert reason(evaluate(offer, Usage(), attempt(stranger))) == R.BOUND_TO_ANOTHER_CONTACT
    assert reason(evaluate(offer, Usage(), attempt(Customer(contact_id="bob")))) == R.NOT_STARTED


def test_window_starts_inclusive_and_expires_exclusive() -> None:
    window = Validity(starts_at=NOW, expires_at=NOW + HOUR)
    assert check_window(window, NOW) is None
    assert check_window(Validity(), NOW) is None
    assert reason(check_window(window, NOW - timedelta(microseconds=1))) == R.NOT_STARTED
    assert reason(check_window(window, NOW + HOUR)) == R.EXPIRED
    with pytest.raises(ValueError, match="aware"):
        check_window(window, NOW.replace(tzinfo=None))


def test_validity_must_expire_after_it_starts() -> None:
    with pytest.raises(ValidationError):
        Validity(starts_at=NOW, expires_at=NOW)


def test_currency() -> None:
    assert check_currency(AmountOff(amount_off=100, currency="EUR"), CART) is None
    assert reason(check_currency(AmountOff(amount_off=100, currency="USD"), CART)) == (
        R.CURRENCY_MISMATCH
    )
    capped_usd = PercentOff(percent_off=Decimal(10), max_amount_off=500, currency="USD")
    assert reason(check_currency(capped_usd, CART)) == R.CURRENCY_MISMATCH
    uncapped_usd = PercentOff(percent_off=Decimal(10), currency="USD")
    assert check_currency(uncapped_usd, CART) is None


def test_minimum_is_on_the_cart_total() -> None:
    assert check_minimum(Eligibility(min_amount=2_000), CART) is None
    assert check_minimum(Eligibility(), CART) is None
    assert reason(check_minimum(Eligibility(min_amount=2_001), CART)) == R.BELOW_MINIMUM


def test_products_match_product_or_plan_ids() -> None:
    assert check_products(Eligibility(), CART) is None
    assert check_products(Eligibility(products=("p2",)), CART) is None
    assert check_products(Eligibility(products=("pro",)), CART) is None
    assert reason(check_products(Eligibility(products=("p9",)), CART)) == R.NOT_APPLICABLE
    no_items = Cart(currency="EUR", amount=2_000)
    assert reason(check_products(Eligibility(products=("p1",)), no_items)) == R.NOT_APPLICABLE


@pytest.mark.parametrize(("first", "refused"), [(True, False), (False, True), (None, True)])
def test_first_purchase_only(first: bool | None, refused: bool) -> None:
    customer = Customer(contact_id="c", first_purchase=first)
    rules = Eligibility(first_purchase_only=True)
    assert (check_first_purchase(rules, customer) is not None) is refused
    assert check_first_purchase(Eligibility(), customer) is None


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        ("ann@example.com", True),
        ("ANN@EXAMPLE.COM", True),
        ("ann@mail.example.com", False),  # exact match only
        ("ann@example.com.evil.io", False),
        ("ann@other.com", False),
        (None, False),
    ],
)
def test_email_domain(email: str | None, allowed: bool) -> None:
    rules = Eligibility(email_domains=("@Example.com",))
    refusal = check_email_domain(rules, Customer(contact_id="c", email=email))
    assert (refusal is None) is allowed
    if refusal:
        assert refusal.reason == R.EMAIL_DOMAIN_NOT_ALLOWED
    assert check_email_domain(Eligibility(), Customer(contact_id="c")) is None


def test_customer_email_is_checked_and_lower_cased() -> None:
    assert ANN.email == "ann@example.com"
    for bad in ("ann", "ann@", "a b@example.com", "ann@example"):
        with pytest.raises(ValidationError):
            Customer(contact_id="c", email=bad)


def test_bound_contact() -> None:
    bound = Eligibility()
    assert check_bound_contact(bound, "ann", ANN) is None
    assert check_bound_contact(bound, None, ANN) is None
    assert reason(check_bound_contact(bound, "bob", ANN)) == R.BOUND_TO_ANOTHER_CONTACT
    assert check_bound_contact(Eligibility(bound_to_contact=False), "bob", ANN) is None


@pytest.mark.parametrize(
    ("flags", "refused"),
    [((), False), ((False,), False), ((True, True), False), ((True, False), True)],
)
def test_stacking(flags: tuple[bool, ...], refused: bool) -> None:
    assert (reason(check_stacking(flags)) == R.NOT_STACKABLE) is refused


def test_limits() -> None:
    limits = Limits(max_redemptions=10, per_contact=2, per_code=3, budget=1_000)
    fresh = Usage()
    assert check_limits(limits, fresh, "ann", 1_000) is None
    assert reason(check_limits(limits, Usage(redemptions=10), "ann", 1)) == R.EXHAUSTED
    assert reason(check_limits(limits, Usage(per_code=3), "ann", 1)) == R.CODE_EXHAUSTED
    twice = Usage(per_contact={"ann": 2})
    assert reason(check_limits(limits, twice, "ann", 1)) == R.PER_CONTACT_LIMIT
    assert check_limits(limits, twice, "bob", 1) is None
    assert reason(check_limits(limits, Usage(budget_spent=900), "ann", 101)) == (R.BUDGET_EXHAUSTED)
    assert check_limits(limits, Usage(budget_spent=900), "ann", 100) is None
    assert reason(check_limits(limits, Usage(budget_spent=1_000), "ann", 0)) == (R.BUDGET_EXHAUSTED)
    unlimited = Limits(per_contact=None)
    assert check_limits(unlimited, Usage(10**6, {"ann": 10**6}, 10**6, 10**9), "ann", 1) is None


def test_limits_default_to_once_per_contact() -> None:
    assert Limits().per_contact == 1
    assert reason(check_limits(Limits(), Usage(per_contact={"ann": 1}), "ann", 0)) == (
        R.PER_CONTACT_LIMIT
    )


def test_duration_months_iff_repeating() -> None:
    assert Duration(kind="repeating", months=3).months == 3
    for bad in ({"kind": "repeating"}, {"kind": "once", "months": 3}):
        with pytest.raises(ValidationError):
            Duration.model_validate(bad)


def test_first_refusal_stops_at_the_first() -> None:
    paused, ended = Refusal(R.PAUSED, ""), Refusal(R.ENDED, "")
    assert first_refusal([None, paused, ended]) == paused
    assert first_refusal([None, None]) is None

    def lazy() -> object:
        yield paused
        raise AssertionError("not reached")

    assert first_refusal(lazy()) == paused  # type: ignore[arg-type]


def attempt(customer: Customer = ANN, cart: Cart = CART, *others: bool) -> Attempt:
    return Attempt(cart=cart, customer=customer, now=NOW, other_codes_stackable=others)


def test_evaluate_accepts_a_good_redemption() -> None:
    assert evaluate(Offer(status="active", discount=TEN_PERCENT), Usage(), attempt()) is None


def test_evaluate_unknown_code() -> None:
    assert reason(evaluate(None, Usage(), attempt())) == R.UNKNOWN_CODE


def test_evaluate_order_from_permanent_to_fixable() -> None:
    """Everything is wrong at once; removing the winning problem reveals the next one."""
    offer = Offer(
        status="ended",
        discount=AmountOff(amount_off=500, currency="USD"),
        validity=Validity(expires_at=NOW - HOUR),
        limits=Limits(max_redemptions=1),
        eligibility=Eligibility(
            first_purchase_only=True,
            email_domains=("corp.com",),
            products=("p9",),
            min_amount=10_000,
        ),
        bound_contact_id="bob",
    )
    stranger = Customer(contact_id="eve", email="eve@home.com", first_purchase=False)
    usage = Usage(redemptions=1)
    fixes: list[tuple[R, dict[str, Any]]] = [
        (R.BOUND_TO_ANOTHER_CONTACT, {"bound_contact_id": None}),
        (R.ENDED, {"status": "active"}),
        (R.EXPIRED, {"validity": Validity()}),
        (R.CURRENCY_MISMATCH, {"discount": AmountOff(amount_off=500, currency="EUR")}),
        (R.EXHAUSTED, {"limits": Limits()}),
    ]
    for expected, fix in fixes:
        assert reason(evaluate(offer, usage, attempt(stranger, CART, False))) == expected
        offer = replace(offer, **fix)
    rules = offer.eligibility
    changes: list[tuple[R, dict[str, Any]]] = [
        (R.FIRST_PURCHASE_ONLY, {"first_purchase_only": False}),
        (R.EMAIL_DOMAIN_NOT_ALLOWED, {"email_domains": ()}),
        (R.NOT_STACKABLE, {"stackable": True}),
        (R.NOT_APPLICABLE, {"products": ()}),
        (R.BELOW_MINIMUM, {"min_amount": None}),
    ]
    for expected, change in changes:
        offer = replace(offer, eligibility=rules)
        assert reason(evaluate(offer, usage, attempt(stranger, CART, True))) == expected
        rules = rules.model_copy(update=change)
    offer = replace(offer, eligibility=rules)
    assert evaluate(offer, usage, attempt(stranger, CART, True)) is None


def test_evaluate_budget_uses_the_priced_discount() -> None:
    offer = Offer(status="active", discount=TEN_PERCENT, limits=Limits(budget=1_000))
    assert evaluate(offer, Usage(budget_spent=800), attempt()) is None  # 200 off fits
    refusal = evaluate(offer, Usage(budget_spent=801), attempt())
    assert reason(refusal) == R.BUDGET_EXHAUSTED

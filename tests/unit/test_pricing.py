from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.checkout import Cart, LineItem
from contracts.money import AmountOff, Discount, PercentOff
from contracts.rules import Eligibility
from services.coupons.domain.pricing import (
    discount_for,
    eligible_amount,
    percent_of,
    total_after,
)

EVERYTHING = Eligibility()


def percent(value: str, cap: int | None = None) -> PercentOff:
    return PercentOff(
        percent_off=Decimal(value), max_amount_off=cap, currency="EUR" if cap else None
    )


def cart(amount: int, *items: LineItem) -> Cart:
    return Cart(currency="EUR", amount=amount, items=items)


@pytest.mark.parametrize(
    ("pct", "amount", "expected"),
    [
        ("15", 333, 50),  # 49.95 -> 50
        ("12.5", 4, 1),  # 0.5 -> 1
        ("10", 4, 0),  # 0.4 -> 0
        ("10", 5, 1),  # 0.5 -> 1
        ("33.33", 100, 33),  # 33.33 -> 33
        ("0.01", 5000, 1),  # 0.5 -> 1
        ("0.01", 4999, 0),  # 0.4999 -> 0
        ("100", 1999, 1999),
        ("20", 0, 0),
    ],
)
def test_percent_rounds_half_up_to_the_minor_unit(pct: str, amount: int, expected: int) -> None:
    assert discount_for(percent(pct), cart(amount), EVERYTHING) == expected


def test_percent_is_exact_for_amounts_beyond_decimal_precision() -> None:
    huge = 10**40 + 5
    assert percent_of(huge, percent("10")) == 10**39 + 1  # ...0.5 rounds up


def test_percent_is_capped_by_max_amount_off() -> None:
    assert discount_for(percent("50", cap=300), cart(10_000), EVERYTHING) == 300
    assert discount_for(percent("50", cap=300), cart(400), EVERYTHING) == 200


def test_amount_off_never_exceeds_the_cart() -> None:
    assert discount_for(AmountOff(amount_off=500, currency="EUR"), cart(300), EVERYTHING) == 300
    assert discount_for(AmountOff(amount_off=500, currency="EUR"), cart(800), EVERYTHING) == 500


def test_only_listed_products_or_plans_count() -> None:
    the_cart = cart(
        1_300,
        LineItem(product_id="p1", amount=100, quantity=3),
        LineItem(product_id="p2", plan_id="pro-monthly", amount=500, quantity=2),
    )
    assert eligible_amount(the_cart, Eligibility(products=("p1",))) == 300
    assert eligible_amount(the_cart, Eligibility(products=("pro-monthly",))) == 1_000
    assert eligible_amount(the_cart, Eligibility(products=("p1", "p2"))) == 1_300
    assert eligible_amount(the_cart, Eligibility(products=("other",))) == 0
    off = AmountOff(amount_off=1_000, currency="EUR")
    assert discount_for(off, the_cart, Eligibility(products=("p1",))) == 300
    assert discount_for(percent("10"), the_cart, Eligibility(products=("p2",))) == 100


def test_a_restricted_discount_on_a_cart_without_items_is_zero() -> None:
    assert discount_for(percent("50"), cart(1_000), Eligibility(products=("p1",))) == 0


def test_a_discount_in_another_currency_is_a_bug_not_a_price() -> None:
    usd = Cart(currency="USD", amount=1_000)
    with pytest.raises(ValueError, match="discount in EUR, cart in USD"):
        discount_for(AmountOff(amount_off=100, currency="EUR"), usd, EVERYTHING)
    assert discount_for(percent("10"), usd, EVERYTHING) == 100  # uncapped works anywhere


def test_items_must_add_up_to_the_cart_amount() -> None:
    with pytest.raises(ValidationError, match="add up"):
        cart(999, LineItem(product_id="p1", amount=500, quantity=2))


def test_total_after() -> None:
    assert total_after(cart(1_000), 250) == 750
    assert total_after(cart(1_000), 1_000) == 0
    for bad in (-1, 1_001):
        with pytest.raises(ValueError):
            total_after(cart(1_000), bad)


percents = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100), places=2)
items = st.lists(
    st.builds(
        LineItem,
        product_id=st.sampled_from(["p1", "p2", "p3"]),
        plan_id=st.none() | st.sampled_from(["m", "y"]),
        amount=st.integers(0, 10**7),
        quantity=st.integers(1, 5),
    ),
    max_size=5,
)
discounts: st.SearchStrategy[Discount] = st.one_of(
    st.builds(
        PercentOff,
        percent_off=percents,
        max_amount_off=st.none() | st.integers(1, 10**6),
        currency=st.just("EUR"),
    ),
    st.builds(AmountOff, amount_off=st.integers(1, 10**8), currency=st.just("EUR")),
)
eligibilities = st.builds(
    Eligibility, products=st.lists(st.sampled_from(["p1", "p2", "m", "zz"]), max_size=3).map(tuple)
)


@st.composite
def carts(draw: st.DrawFn) -> Cart:
    lines = tuple(draw(items))
    amount = sum(i.amount * i.quantity for i in lines) if lines else draw(st.integers(0, 10**9))
    return Cart(currency="EUR", amount=amount, items=lines)


@given(discounts, carts(), eligibilities)
def test_discount_is_within_zero_and_what_it_applies_to(
    discount: Discount, the_cart: Cart, rules: Eligibility
) -> None:
    off = discount_for(discount, the_cart, rules)
    assert 0 <= off <= eligible_amount(the_cart, rules) <= the_cart.amount
    assert total_after(the_cart, off) == the_cart.amount - off >= 0


@given(percents, st.integers(0, 10**12))
def test_percent_matches_decimal_half_up(pct: Decimal, amount: int) -> None:
    expected = (Decimal(amount) * pct / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert percent_of(amount, PercentOff(percent_off=pct)) == int(expected)


def test_stacked_codes_apply_in_order_to_what_is_left() -> None:
    half = percent("50")
    assert discount_for(half, cart(1000), EVERYTHING, already_off=500) == 250
    five = AmountOff(amount_off=500, currency="EUR")
    assert discount_for(five, cart(1000), EVERYTHING, already_off=800) == 200
    assert total_after(cart(1000), 200, already_off=800) == 0
    with pytest.raises(ValueError):
        discount_for(half, cart(1000), EVERYTHING, already_off=1001)
    with pytest.raises(ValueError):
        total_after(cart(1000), 300, already_off=800)

from decimal import Decimal

import pytest

from contracts.money import AmountOff, Discount, PercentOff
from contracts.rules import Duration
from services.coupons.domain.summary import describe, money


@pytest.mark.parametrize(
    ("discount", "duration", "words"),
    [
        (PercentOff(percent_off=Decimal(20)), Duration(), "20% off, on one invoice"),
        (
            PercentOff(percent_off=Decimal("12.5"), max_amount_off=5000, currency="EUR"),
            Duration(kind="repeating", months=3),
            "12.5% off (up to EUR 50.00), for 3 months",
        ),
        (
            AmountOff(amount_off=1250, currency="JPY"),
            Duration(kind="forever"),
            "JPY 1250 off, on every invoice",
        ),
        (
            AmountOff(amount_off=1250, currency="KWD"),
            Duration(kind="repeating", months=1),
            "KWD 1.250 off, for 1 month",
        ),
    ],
)
def test_a_discount_in_words(discount: Discount, duration: Duration, words: str) -> None:
    assert describe(discount, duration) == words


def test_money_uses_the_currency_exponent() -> None:
    assert money(5, "USD") == "USD 0.05"
    assert money(500, "JPY") == "JPY 500"

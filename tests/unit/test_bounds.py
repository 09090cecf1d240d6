"""The bounds of `contracts.bounds`: what every consumer can store, refused at the edge, and
the derived values the decider refuses to let leave them."""

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.bounds import MAX_AMOUNT, MAX_TOTAL, MONEY_CURRENCIES
from contracts.checkout import Cart, Customer
from contracts.commands import DefineCampaign, RecordRedemption, RedeemCode, RefundRedemption
from contracts.events import CodeRedeemed, CommandRejected, RedemptionRefunded
from contracts.money import AmountOff
from contracts.reasons import Reason
from contracts.rules import Limits, Validity
from services.coupons.domain.campaign import decide, evolve

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def cart(**fields: Any) -> dict[str, Any]:
    return {"currency": "EUR", "amount": 1000, **fields}


@pytest.mark.parametrize(
    "fields",
    [
        {"amount": MAX_AMOUNT + 1},
        {"amount": 10**20},
        {"amount": True},
        {"amount": "100"},
        {"amount": 100.0},
        {"amount": -1},
        {"currency": "XXX"},
        {"currency": "XAU"},
        {"currency": "eur"},
        {"amount": 1001, "items": [{"product_id": "p", "amount": 1}] * 1001},
        {"amount": 1, "items": [{"product_id": "p\x00", "amount": 1}]},
        {"amount": 2, "items": [{"product_id": "p", "amount": 1, "quantity": 10**9 + 1}]},
    ],
)
def test_a_cart_out_of_bounds_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Cart.model_validate_json(_json(fields))


def _json(fields: dict[str, Any]) -> str:
    return json.dumps(cart(**fields))


def test_a_cart_at_the_bounds_is_accepted() -> None:
    assert Cart.model_validate_json(_json({"amount": MAX_AMOUNT})).amount == MAX_AMOUNT
    items = [{"product_id": "p", "amount": 1}] * 1000
    assert len(Cart.model_validate_json(_json({"amount": 1000, "items": items})).items) == 1000
    assert "JPY" in MONEY_CURRENCIES and "XOF" in MONEY_CURRENCIES


@pytest.mark.parametrize("contact_id", ["", "a\x00", "a\nb", "\x7f", "x" * 129])
def test_an_id_with_control_characters_or_too_long_is_refused(contact_id: str) -> None:
    with pytest.raises(ValidationError):
        Customer(contact_id=contact_id)


def test_unicode_ids_and_reasons_with_line_breaks_are_fine() -> None:
    assert Customer(contact_id="contact é漢😀").contact_id == "contact é漢😀"
    refund = RefundRedemption(
        campaign_id="c1",
        redemption_id="r1",
        refund_id="re_1",
        currency="EUR",
        refunded=1,
        reason="line one\nline two",
    )
    assert "\n" in refund.reason


@pytest.mark.parametrize(
    "when",
    [
        "1999-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
    ],
)
def test_timestamps_outside_2000_to_2200_are_refused(when: str) -> None:
    with pytest.raises(ValidationError):
        Validity.model_validate_json(f'{{"starts_at": "{when}"}}')


@pytest.mark.parametrize(
    "limits",
    ['{"max_redemptions": 100000000000000000000}', '{"budget": 1e30}', '{"per_contact": true}'],
)
def test_limits_out_of_bounds_are_refused(limits: str) -> None:
    with pytest.raises(ValidationError):
        Limits.model_validate_json(limits)


def test_a_default_expiry_past_2200_is_refused_as_invalid_terms() -> None:
    command = DefineCampaign(
        campaign_id="c1",
        name="Late",
        discount=AmountOff(amount_off=5, currency="EUR"),
        validity=Validity(starts_at=datetime(2199, 12, 31, tzinfo=UTC)),
        default_expiry_days=30,
    )
    [refused] = decide(None, command, NOW)
    assert isinstance(refused, CommandRejected)
    assert refused.reason == Reason.INVALID_TERMS


def _campaign_near_the_total() -> Any:
    define = DefineCampaign(
        campaign_id="c1",
        name="Big",
        code="BIG",
        discount=AmountOff(amount_off=MAX_AMOUNT, currency="EUR"),
        limits=Limits(per_contact=None),
    )
    [defined] = decide(None, define, NOW)
    campaign = evolve(None, defined, NOW)
    assert campaign is not None
    return replace(campaign, budget_spent=MAX_TOTAL - MAX_AMOUNT + 1)


def test_a_redemption_past_the_total_discount_bound_is_refused_as_out_of_range() -> None:
    campaign = _campaign_near_the_total()
    redeem = RedeemCode(
        campaign_id="c1",
        redemption_id="r1",
        code="BIG",
        customer=Customer(contact_id="c"),
        cart=Cart(currency="EUR", amount=MAX_AMOUNT),
        order_ref="o1",
    )
    [refused] = decide(campaign, redeem, NOW)
    assert isinstance(refused, CommandRejected) and refused.reason == Reason.OUT_OF_RANGE
    small = redeem.model_copy(update={"cart": Cart(currency="EUR", amount=MAX_AMOUNT - 1)})
    [accepted] = decide(campaign, small, NOW)
    assert isinstance(accepted, CodeRedeemed)
    record = RecordRedemption(
        campaign_id="c1",
        redemption_id="r2",
        code="BIG",
        contact_id="c",
        order_ref="in_1",
        currency="EUR",
        amount=MAX_AMOUNT,
        discount=MAX_AMOUNT,
        total=0,
    )
    [refused] = decide(campaign, record, NOW)
    assert isinstance(refused, CommandRejected) and refused.reason == Reason.OUT_OF_RANGE


def test_refunds_past_the_total_bound_are_refused_and_counted_when_accepted() -> None:
    campaign = _campaign_near_the_total()
    redeem = RedeemCode(
        campaign_id="c1",
        redemption_id="r1",
        code="BIG",
        customer=Customer(contact_id="c"),
        cart=Cart(currency="EUR", amount=10),
        order_ref="o1",
    )
    [redeemed] = decide(campaign, redeem, NOW)
    campaign = evolve(campaign, redeemed, NOW)
    refunds = 0
    for n in range(MAX_TOTAL // MAX_AMOUNT + 1):
        refund = RefundRedemption(
            campaign_id="c1",
            redemption_id="r1",
            refund_id=f"re_{n}",
            currency="EUR",
            refunded=MAX_AMOUNT,
        )
        [event] = decide(campaign, refund, NOW)
        if isinstance(event, CommandRejected):
            assert event.reason == Reason.OUT_OF_RANGE
            break
        assert isinstance(event, RedemptionRefunded)
        campaign = evolve(campaign, event, NOW)
        refunds += 1
    assert refunds == MAX_TOTAL // MAX_AMOUNT
    assert campaign.ledger["r1"].refunded == refunds * MAX_AMOUNT <= MAX_TOTAL

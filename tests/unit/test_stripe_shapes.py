"""Reading Stripe's events (pinned and older shapes), signatures, and recording facts."""

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.commands import RecordRedemption, RefundRedemption
from contracts.events import CodeRedeemed, CommandRejected, RedemptionRefunded
from contracts.money import PercentOff
from contracts.reasons import Reason
from contracts.rules import Limits
from services.coupons.api.errors import STATUS
from services.coupons.domain.campaign import Campaign, decide, evolve
from services.coupons.service.refusals import Refused
from services.coupons.service.stripe_webhooks import verify
from services.coupons.stripe.mirror import coupon_params
from services.coupons.stripe.shapes import (
    MalformedStripeEvent,
    Payment,
    Refund,
    fact_of,
    split,
)
from tests import stripe_payloads as sp

NOW = datetime(2026, 11, 1, tzinfo=UTC)
SECRET = "whsec_unit"


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_split_adds_up_exactly_and_follows_the_weights(total: int, weights: list[int]) -> None:
    shares = split(total, weights)
    assert sum(shares) == total and all(s >= 0 for s in shares)
    if sum(weights):
        for share, weight in zip(shares, weights, strict=True):
            assert abs(share - total * weight / sum(weights)) < 1


def test_a_pinned_version_invoice_is_read_with_its_discount_ids() -> None:
    paid = sp.invoice("cus_1", [("di_a", 300), ("di_b", 200)], 2000, metadata={"x": "y"})
    fact = fact_of(sp.event("invoice.paid", paid))
    assert isinstance(fact, Payment)
    assert (fact.order_ref, fact.currency, fact.amount_paid) == (paid["id"], "EUR", 1500)
    assert [(d.key, d.amount, d.discount) for d in fact.discounts] == [
        ("di_a", 300, None),
        ("di_b", 200, None),
    ]


def test_older_versions_carry_the_discount_whole_and_the_charge_on_the_invoice() -> None:
    whole = sp.discount("cus_1", sp.coupon(metadata={"growthos_campaign_id": "c1"}))
    paid = sp.invoice("cus_1", [(whole["id"], 300)], 2000)
    paid.pop("parent")
    paid |= {"discount": whole, "charge": "ch_1", "payment_intent": "pi_1"}
    fact = fact_of(sp.event("invoice.paid", paid))
    assert isinstance(fact, Payment)
    assert fact.discounts[0].coupon == whole["source"]["coupon"] and fact.charge == "ch_1"
    refund = fact_of(
        sp.event("charge.refunded", sp.charge("pi_1", 1700, 100) | {"invoice": "in_1"})
    )
    assert isinstance(refund, Refund) and refund.invoice == "in_1" and refund.cumulative


def test_discounts_before_2025_09_30_name_their_coupon_directly() -> None:
    whole = sp.discount("cus_1", sp.coupon())
    whole["coupon"] = whole.pop("source")["coupon"]
    paid = sp.invoice("cus_1", [(whole["id"], 300)], 2000)
    paid["discounts"] = [whole]  # expanded
    fact = fact_of(sp.event("invoice.paid", paid))
    assert isinstance(fact, Payment) and fact.discounts[0].coupon == whole["coupon"]


def test_credit_notes_count_only_what_was_not_refunded_to_the_card() -> None:
    partly = fact_of(sp.event("credit_note.created", sp.credit_note("in_1", 1000, refunded=600)))
    assert isinstance(partly, Refund) and partly.amount == 400 and not partly.cumulative
    assert fact_of(sp.event("credit_note.created", sp.credit_note("in_1", 1000, 1000))) is None


def test_sessions_with_an_invoice_or_unpaid_are_left_to_other_events() -> None:
    session = sp.checkout_session("promo_1", "C1", 3000, 300)
    assert fact_of(sp.event("checkout.session.completed", session | {"invoice": "in_1"})) is None
    unpaid = session | {"payment_status": "unpaid"}
    assert fact_of(sp.event("checkout.session.completed", unpaid)) is None
    fact = fact_of(sp.event("checkout.session.completed", session))
    assert isinstance(fact, Payment) and fact.discounts[0].key == "promo_1"


def test_unhandled_types_are_no_fact_and_malformed_ones_name_the_field() -> None:
    assert fact_of(sp.event("customer.created", {"id": "cus_1"})) is None
    broken = sp.invoice("cus_1", [], 100)
    del broken["amount_paid"]
    with pytest.raises(MalformedStripeEvent) as error:
        fact_of(sp.event("invoice.paid", broken))
    assert error.value.field == "data.object.amount_paid"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "signature_missing"),
        ("t=1,v1=00", "signature_invalid"),
        ("garbage", "signature_invalid"),
    ],
)
def test_bad_signatures_are_refused(header: str | None, code: str) -> None:
    with pytest.raises(Refused) as error:
        verify(b"{}", header, SECRET, 300)
    assert (STATUS[error.value.code], error.value.code) == (400, code)


def test_a_good_signature_outside_the_tolerance_is_stale_and_inside_is_accepted() -> None:
    body = sp.body_of(sp.event("invoice.paid", sp.invoice("cus_1", [], 100)))
    with pytest.raises(Refused) as error:
        verify(body, sp.sign(body, SECRET, int(time.time()) - 301), SECRET, 300)
    assert error.value.code == "signature_expired"
    assert verify(body, sp.sign(body, SECRET, int(time.time()) - 299), SECRET, 300)["id"]
    not_an_event = b'{"id": "x"}'
    with pytest.raises(Refused) as error:
        verify(not_an_event, sp.sign(not_an_event, SECRET), SECRET, 300)
    assert error.value.code == "invalid_payload"


def campaign() -> Campaign:
    """Paused and used up: a payment system's redemption is recorded all the same."""
    return Campaign(
        id="c1",
        name="c",
        discount=PercentOff(percent_off="20"),
        defined_at=NOW,
        code="SPRING",
        status="paused",
        limits=Limits(max_redemptions=1),
        redemptions=1,
    )


def record(rid: str = "r1") -> RecordRedemption:
    return RecordRedemption(
        campaign_id="c1",
        redemption_id=rid,
        code="SPRING",
        contact_id="k",
        order_ref="in_1",
        currency="EUR",
        amount=5000,
        discount=1000,
        total=4000,
    )


def test_a_stripe_redemption_is_a_fact_recorded_past_limits_and_once() -> None:
    state = campaign()
    [event] = decide(state, record(), NOW)
    assert isinstance(event, CodeRedeemed) and event.source == "stripe"
    assert (event.amount, event.discount, event.total) == (5000, 1000, 4000)
    state = evolve(state, event, NOW)
    assert state is not None and state.redemptions == 2
    [again] = decide(state, record(), NOW)
    assert isinstance(again, CommandRejected) and again.reason == Reason.REDEMPTION_EXISTS


def test_a_partial_refund_counts_once_per_refund_id() -> None:
    state = evolve(campaign(), decide(campaign(), record(), NOW)[0], NOW)
    refund = RefundRedemption(
        campaign_id="c1", redemption_id="r1", refund_id="re_1", currency="EUR", refunded=300
    )
    [event] = decide(state, refund, NOW)
    assert isinstance(event, RedemptionRefunded) and event.refunded == 300
    state = evolve(state, event, NOW)
    assert state is not None and state.redemptions == 2
    assert decide(state, refund, NOW) == []
    unknown = refund.model_copy(update={"redemption_id": "r2"})
    [rejected] = decide(state, unknown, NOW)
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason == Reason.REDEMPTION_NOT_FOUND


def test_a_campaign_becomes_the_matching_stripe_coupon() -> None:
    campaign = {
        "id": "spring",
        "name": "Spring",
        "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
        "duration": {"kind": "repeating", "months": 3},
        "validity": {"starts_at": None, "expires_at": "2026-12-01T00:00:00+00:00"},
        "limits": {"max_redemptions": 100, "per_contact": 1},
    }
    assert coupon_params(campaign) == {
        "id": "growthos-spring",
        "name": "Spring",
        "duration": "repeating",
        "duration_in_months": 3,
        "amount_off": 500,
        "currency": "eur",
        "redeem_by": 1796083200,
        "max_redemptions": 100,
        "metadata": {"growthos_campaign_id": "spring"},
    }

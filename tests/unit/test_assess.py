"""`refusals.assess`: what a validation answers is what the decider decides (the same checks,
the same price), and a campaign's shared-code terms, built once per version, are never stale."""

import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.checkout import Cart, Customer, LineItem
from contracts.commands import (
    AddCodes,
    ChangeCampaignStatus,
    Command,
    DefineCampaign,
    DistributeCode,
    RedeemCode,
    UpdateCampaign,
)
from contracts.events import CodeRedeemed, CommandRejected
from contracts.money import AmountOff, Discount, PercentOff
from contracts.reasons import Reason
from contracts.rules import Eligibility, Limits, Validity
from services.coupons.domain import eligibility as checks
from services.coupons.domain.campaign import Campaign, decide, evolve
from services.coupons.domain.refusals import Priced, assess

NOW = datetime(2026, 11, 1, tzinfo=UTC)
DISCOUNTS: list[Discount] = [
    AmountOff(amount_off=500, currency="EUR"),
    PercentOff(percent_off=Decimal("12.5")),
    PercentOff(percent_off=Decimal("50"), max_amount_off=700, currency="EUR"),
]


def fold(commands: list[Command], now: datetime = NOW) -> Campaign:
    state: Campaign | None = None
    for command in commands:
        for event in decide(state, command, now):
            state = evolve(state, event, now)
    assert state is not None
    return state


def define(discount: Discount, **terms: object) -> DefineCampaign:
    return DefineCampaign.model_validate(
        {"campaign_id": "c1", "name": "Spring", "discount": discount, "code": "SPRING", **terms}
    )


def redeem(n: int, code: str, customer: Customer, cart: Cart, **more: object) -> RedeemCode:
    return RedeemCode.model_validate(
        {
            "campaign_id": "c1",
            "redemption_id": f"r{n}",
            "code": code,
            "customer": customer,
            "cart": cart,
            "order_ref": f"o{n}",
            **more,
        }
    )


# each choice leans towards what lets a use through, so that the later checks are reached
campaigns = st.builds(
    lambda discount, status, window, limits, rules, redeemed: (
        discount,
        status,
        window,
        limits,
        rules,
        redeemed,
    ),
    st.sampled_from(DISCOUNTS),
    st.sampled_from(["active", "active", "active", "paused", "draft", "ended"]),
    st.sampled_from(["open", "open", "open", "not yet", "over"]),
    st.builds(
        Limits,
        max_redemptions=st.none() | st.integers(1, 3),
        per_contact=st.none() | st.integers(1, 2),
        budget=st.none() | st.integers(400, 1500),
    ),
    st.builds(
        Eligibility,
        min_amount=st.sampled_from([None, None, 1000, 3000]),
        products=st.sampled_from([(), (), ("p1",), ("p9",)]),
        first_purchase_only=st.sampled_from([False, False, True]),
        email_domains=st.sampled_from([(), (), ("example.com",), ("other.org",)]),
        stackable=st.booleans(),
        segments=st.sampled_from([(), ("vip",)]),
        excluded_segments=st.sampled_from([(), ("churned",)]),
    ),
    st.integers(0, 3),
)
attempts = st.tuples(
    st.sampled_from(["SPRING", "UNIQ1", "UNIQ2", "NOPE"]),
    st.sampled_from(["ann", "bob"]),
    st.sampled_from(["ann@example.com", "bob@other.org", None]),
    st.sampled_from([True, False, None]),
    st.sampled_from(["EUR", "EUR", "EUR", "USD"]),
    st.sampled_from([(), (True,), (False,)]),
    st.sampled_from([(), ("vip",), ("churned",), ("churned", "vip")]),
    st.integers(0, 1000),
)


@settings(max_examples=1000, deadline=None)
@given(campaigns, attempts)
def test_a_validation_answers_what_the_decider_decides(
    campaign: tuple[Discount, str, str, Limits, Eligibility, int],
    attempt: tuple[str, str, str | None, bool | None, str, tuple[bool, ...], tuple[str, ...], int],
) -> None:
    """Every rule, limit, status, window, code kind (shared, unique and held by ann, unique
    and free, unknown) and stacking: the same refusal, or the same price."""
    discount, status, window, limits, rules, redeemed = campaign
    code, contact, email, first, currency, others, segments, already_off = attempt
    starts_at = {"open": NOW - timedelta(days=1), "not yet": NOW + timedelta(days=1)}
    validity = Validity(
        starts_at=starts_at.get(window, NOW - timedelta(days=3)),
        expires_at=NOW - timedelta(days=1) if window == "over" else NOW + timedelta(days=9),
    )
    items = (LineItem(product_id="p1", amount=1200), LineItem(product_id="p2", amount=800))
    ann = Customer(contact_id="ann", email="ann@example.com", first_purchase=True)
    history: list[Command] = [
        define(discount, status="draft" if status == "draft" else "active"),
        AddCodes(campaign_id="c1", batch_id="b", chunk=0, codes=("UNIQ1", "UNIQ2")),
        DistributeCode(campaign_id="c1", distribution_id="d1", contact_id="ann"),
        *(redeem(n, "SPRING", ann, Cart(currency="EUR", amount=2000)) for n in range(redeemed)),
        UpdateCampaign(
            campaign_id="c1", limits=limits, eligibility=rules, validity=validity, reason="test"
        ),
    ]
    if status in ("paused", "ended"):
        history.append(ChangeCampaignStatus(campaign_id="c1", status=status))
    state = fold(history, NOW - timedelta(days=2))
    cart = Cart(currency=currency, amount=2000, items=items)
    customer = Customer(contact_id=contact, email=email, first_purchase=first)
    stacked = {"other_codes_stackable": others, "already_off": already_off}
    command = redeem(99, code, customer, cart, segments=segments, **stacked)

    [decided] = decide(state, command, NOW)
    found = assess(state, code, customer, cart, NOW, others, already_off, segments)

    if isinstance(decided, CodeRedeemed):
        assert found == Priced(decided.discount, decided.total)
    else:
        assert isinstance(decided, CommandRejected)
        assert found == checks.Refusal(decided.reason, decided.detail)


def test_the_shared_codes_terms_follow_every_change_of_the_campaign() -> None:
    """Built once per version of the campaign: a pause, new limits and a redemption are seen
    by the next assessment, not hidden behind the last one's terms."""
    ann = Customer(contact_id="ann")
    cart = Cart(currency="EUR", amount=2000)
    state = fold([define(DISCOUNTS[0], limits=Limits(max_redemptions=2))])
    assert state.terms("SPRING") is state.terms("SPRING")  # built once
    assert assess(state, "SPRING", ann, cart, NOW) == Priced(500, 1500)

    paused = evolve(state, decide(state, *_status("paused"), NOW)[0], NOW)
    assert paused is not None
    assert assess(paused, "SPRING", ann, cart, NOW) == checks.Refusal(
        Reason.PAUSED, "the campaign is paused"
    )

    used = state
    for n in range(2):
        [event] = decide(used, redeem(n, "SPRING", Customer(contact_id=f"c{n}"), cart), NOW)
        used = evolve(used, event, NOW)
        assert used is not None
    refused = assess(used, "SPRING", ann, cart, NOW)
    assert isinstance(refused, checks.Refusal) and refused.reason == Reason.EXHAUSTED


def test_a_snapshot_of_a_campaign_keeps_no_cached_terms() -> None:
    state = fold([define(DISCOUNTS[1])])
    state.terms("SPRING")
    assert "_shared_terms" in vars(state)
    restored = pickle.loads(pickle.dumps(state))
    assert "_shared_terms" not in vars(restored)
    assert restored == state
    assert restored.terms("SPRING") == state.terms("SPRING")


def _status(status: str) -> tuple[ChangeCampaignStatus]:
    return (ChangeCampaignStatus(campaign_id="c1", status=status),)  # type: ignore[arg-type]

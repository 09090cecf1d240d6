from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
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
    ReverseRedemption,
    UpdateCampaign,
)
from contracts.envelope import Envelope
from contracts.events import (
    CampaignDefined,
    CampaignStatusChanged,
    CampaignUpdated,
    CodeDistributed,
    CodeRedeemed,
    CodesAdded,
    CodesLow,
    CommandRejected,
    Event,
    RedemptionReversed,
)
from contracts.money import AmountOff, PercentOff
from contracts.reasons import Reason
from contracts.replies import EventPosition
from contracts.rules import Eligibility, Limits, Validity
from services.coupons.domain.campaign import Campaign, decide, evolve
from services.coupons.domain.idempotency import KeyReused, Memo, request_hash

NOW = datetime(2026, 11, 1, tzinfo=UTC)
FIVE_EUR = AmountOff(amount_off=500, currency="EUR")


def define(**overrides: object) -> DefineCampaign:
    fields = {"campaign_id": "c1", "name": "Spring", "discount": FIVE_EUR, "code": "SPRING"}
    return DefineCampaign.model_validate({**fields, **overrides})


def run(commands: list[Command], now: datetime = NOW) -> tuple[Campaign | None, list[Event]]:
    state: Campaign | None = None
    log: list[Event] = []
    for command in commands:
        for event in decide(state, command, now):
            state = evolve(state, event, now)
            log.append(event)
    return state, log


def redeem(n: int, contact: str = "alice", amount: int = 2000, code: str = "SPRING") -> RedeemCode:
    return RedeemCode(
        campaign_id="c1",
        redemption_id=f"r{n}",
        code=code,
        customer=Customer(contact_id=contact, email=f"{contact}@example.com"),
        cart=Cart(currency="EUR", amount=amount),
        order_ref=f"order-{n}",
    )


def refusal(events: list[Event]) -> Reason | None:
    last = events[-1]
    return last.reason if isinstance(last, CommandRejected) else None


def test_defining_a_new_campaign() -> None:
    state, [event] = run([define()])
    assert isinstance(event, CampaignDefined)
    assert state is not None and state.code == "SPRING" and state.status == "active"


def test_defining_twice_is_refused() -> None:
    _, log = run([define(), define(name="Other")])
    assert refusal(log) is Reason.CAMPAIGN_EXISTS


def test_a_command_for_an_unknown_campaign_is_refused() -> None:
    _, log = run([redeem(1)])
    assert refusal(log) is Reason.CAMPAIGN_NOT_FOUND


def test_redeeming_computes_the_discount_server_side() -> None:
    percent = PercentOff(percent_off="15", max_amount_off=1000, currency="EUR")  # type: ignore[arg-type]
    state, log = run([define(discount=percent), redeem(1, amount=333)])
    assert log[-1] == CodeRedeemed(
        campaign_id="c1",
        redemption_id="r1",
        code="SPRING",
        contact_id="alice",
        order_ref="order-1",
        currency="EUR",
        amount=333,
        discount=50,  # 49.95 rounds half up
        total=283,
    )
    assert state is not None and state.redemptions == 1 and state.budget_spent == 50


def test_a_discount_never_exceeds_the_amount() -> None:
    _, log = run([define(), redeem(1, amount=300)])
    assert isinstance(log[-1], CodeRedeemed)
    assert (log[-1].discount, log[-1].total) == (300, 0)


@pytest.mark.parametrize(
    ("limits", "commands", "reason"),
    [
        (
            Limits(max_redemptions=2, per_contact=None),
            [redeem(1, "a"), redeem(2, "b"), redeem(3, "c")],
            Reason.EXHAUSTED,
        ),
        (Limits(per_contact=1), [redeem(1, "a"), redeem(2, "a")], Reason.PER_CONTACT_LIMIT),
        (
            Limits(per_code=1, per_contact=None),
            [redeem(1, "a"), redeem(2, "b")],
            Reason.CODE_EXHAUSTED,
        ),
        (
            Limits(budget=800, per_contact=None),
            [redeem(1, "a"), redeem(2, "b")],
            Reason.BUDGET_EXHAUSTED,
        ),
    ],
)
def test_each_limit_refuses_with_its_reason(
    limits: Limits, commands: list[Command], reason: Reason
) -> None:
    _, log = run([define(limits=limits), *commands])
    assert refusal(log) is reason


@pytest.mark.parametrize(
    ("overrides", "command", "reason"),
    [
        ({}, redeem(1, code="OTHER"), Reason.UNKNOWN_CODE),
        ({"status": "draft"}, redeem(1), Reason.NOT_STARTED),
        (
            {"status": "draft"},
            DistributeCode(campaign_id="c1", distribution_id="d1", contact_id="ann"),
            Reason.NOT_STARTED,
        ),
        ({"validity": Validity(starts_at=NOW + timedelta(days=1))}, redeem(1), Reason.NOT_STARTED),
        ({"validity": Validity(expires_at=NOW)}, redeem(1), Reason.EXPIRED),
        ({"eligibility": Eligibility(min_amount=5000)}, redeem(1), Reason.BELOW_MINIMUM),
        (
            {"eligibility": Eligibility(email_domains=("acme.io",))},
            redeem(1),
            Reason.EMAIL_DOMAIN_NOT_ALLOWED,
        ),
        (
            {"eligibility": Eligibility(first_purchase_only=True)},
            redeem(1),
            Reason.FIRST_PURCHASE_ONLY,
        ),
    ],
)
def test_rules_refuse_with_stable_reasons(
    overrides: dict[str, object], command: Command, reason: Reason
) -> None:
    _, log = run([define(**overrides), command])
    assert refusal(log) is reason


def test_products_rule_discounts_only_eligible_items() -> None:
    cart = Cart(
        currency="EUR",
        amount=3000,
        items=(LineItem(product_id="pro", amount=1000), LineItem(product_id="addon", amount=2000)),
    )
    command = redeem(1).model_copy(update={"cart": cart})
    percent = PercentOff(percent_off="50")  # type: ignore[arg-type]
    _, log = run([define(discount=percent, eligibility=Eligibility(products=("pro",))), command])
    assert isinstance(log[-1], CodeRedeemed) and log[-1].discount == 500


def test_paused_and_ended_campaigns_refuse_and_ended_is_final() -> None:
    pause = ChangeCampaignStatus(campaign_id="c1", status="paused")
    end = ChangeCampaignStatus(campaign_id="c1", status="ended")
    resume = ChangeCampaignStatus(campaign_id="c1", status="active")
    _, log = run([define(), pause, redeem(1)])
    assert isinstance(log[1], CampaignStatusChanged) and refusal(log) is Reason.PAUSED
    _, log = run([define(), end, redeem(1)])
    assert refusal(log) is Reason.ENDED
    _, log = run([define(), end, resume])
    assert refusal(log) is Reason.INVALID_STATUS_TRANSITION
    state, log = run([define(), pause, pause])
    assert len(log) == 2 and state is not None and state.status == "paused"  # no-op, no event


def test_reversal_releases_the_limits_and_budget() -> None:
    limits = Limits(max_redemptions=1, per_contact=1, budget=500)
    reverse = ReverseRedemption(campaign_id="c1", redemption_id="r1", reason="refund")
    state, log = run([define(limits=limits), redeem(1), reverse, redeem(2)])
    assert [type(e) for e in log] == [
        CampaignDefined,
        CodeRedeemed,
        RedemptionReversed,
        CodeRedeemed,
    ]
    assert state is not None and (state.redemptions, state.budget_spent) == (1, 500)
    _, log = run([define(), redeem(1), reverse, reverse])
    assert refusal(log) is Reason.ALREADY_REVERSED
    _, log = run([define(), reverse])
    assert refusal(log) is Reason.REDEMPTION_NOT_FOUND
    _, log = run([define(), redeem(1), redeem(1, contact="bob")])
    assert refusal(log) is Reason.REDEMPTION_EXISTS


def answer(command: Envelope[DefineCampaign], event: Event) -> Envelope[Event]:
    return Envelope[Event](
        key=command.key,
        correlation_id="x",
        idempotency_key=command.idempotency_key,
        request_hash=request_hash(command.data),
        data=event,
    )


def test_memo_answers_a_retry_with_the_first_outcome_and_refuses_a_reused_key() -> None:
    memo = Memo()
    first = Envelope[DefineCampaign](
        key="c1", correlation_id="x", idempotency_key="k1", data=define()
    )
    events = decide(None, first.data, NOW)
    memo.begin(first, request_hash(first.data), events, NOW)
    memo.place(answer(first, events[0]), EventPosition(partition=1, offset=7))
    retry = first.model_copy(update={"id": uuid4()})
    prior = memo.recall(retry, request_hash(retry.data))
    assert prior is not None and prior.outcome == "accepted"
    assert prior.events == (EventPosition(partition=1, offset=7),)
    with pytest.raises(KeyReused):
        other = first.model_copy(update={"data": define(name="other")})
        memo.recall(other, request_hash(other.data))
    rebuilt = Memo()
    rebuilt.replay(answer(first, events[0]), EventPosition(partition=1, offset=7))
    assert rebuilt.get(first) == memo.get(first)


limits_strategy = st.builds(
    Limits,
    max_redemptions=st.none() | st.integers(1, 6),
    per_contact=st.none() | st.integers(1, 3),
    per_code=st.none() | st.integers(1, 8),
    budget=st.none() | st.integers(1, 5000),
)
step = st.one_of(
    st.tuples(
        st.just("redeem"),
        st.integers(0, 30),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 3000),
    ),
    st.tuples(st.just("reverse"), st.integers(0, 30), st.just(""), st.just(0)),
    st.tuples(
        st.just("status"), st.just(0), st.sampled_from(["active", "paused", "ended"]), st.just(0)
    ),
    st.tuples(st.just("limit"), st.integers(1, 6), st.just(""), st.integers(1, 5000)),
)


@settings(max_examples=300, deadline=None)
@given(limits_strategy, st.lists(step, max_size=40))
def test_no_sequence_of_commands_exceeds_a_limit_and_the_log_folds_back(
    limits: Limits, steps: list[tuple[str, int, str, int]]
) -> None:
    commands: list[Command] = [define(limits=limits)]
    for kind, n, who, amount in steps:
        if kind == "redeem":
            commands.append(redeem(n, contact=who, amount=amount))
        elif kind == "reverse":
            commands.append(ReverseRedemption(campaign_id="c1", redemption_id=f"r{n}"))
        elif kind == "limit":
            changed = limits.model_copy(update={"max_redemptions": n, "budget": amount})
            commands.append(UpdateCampaign(campaign_id="c1", limits=changed, reason="tuning"))
        else:
            commands.append(ChangeCampaignStatus(campaign_id="c1", status=who))  # type: ignore[arg-type]
    state: Campaign | None = None
    log: list[Event] = []
    for command in commands:
        for event in decide(state, command, NOW):
            state = evolve(state, event, NOW)
            log.append(event)
        assert state is not None
        live = [r for r in state.ledger.values() if not r.reversed]
        assert state.redemptions == len(live)
        assert state.budget_spent == sum(r.discount for r in live)
        if not isinstance(log[-1], CodeRedeemed):
            continue  # a lowered limit may leave usage above it; a redemption never goes past
        current = state.limits
        if current.max_redemptions is not None:
            assert state.redemptions <= current.max_redemptions
        if current.budget is not None:
            assert state.budget_spent <= current.budget
        if current.per_contact is not None:
            assert all(n <= current.per_contact for n in state.per_contact.values())
        if current.per_code is not None:
            assert all(n <= current.per_code for n in state.per_code.values())
    folded: Campaign | None = None
    for event in log:
        folded = evolve(folded, event, NOW)
    assert folded == state


def test_every_campaign_expires_by_default() -> None:
    state, _ = run([define(default_expiry_days=7)])
    assert state is not None and state.validity.expires_at == NOW + timedelta(days=7)
    start = NOW + timedelta(days=2)
    state, _ = run([define(validity=Validity(starts_at=start))])
    assert state is not None and state.validity.expires_at == start + timedelta(days=30)


def distribute(contact: str = "alice") -> DistributeCode:
    return DistributeCode(
        campaign_id="c1", distribution_id=f"d-{contact}", contact_id=contact, channel="sequence"
    )


def test_distribution_gives_the_code_until_the_campaign_ends_or_expires() -> None:
    state, log = run([define(validity=Validity(expires_at=NOW + timedelta(days=3))), distribute()])
    assert isinstance(log[-1], CodeDistributed)
    assert (log[-1].code, log[-1].expires_at) == ("SPRING", NOW + timedelta(days=3))
    assert state is not None and state.distributed == 1
    _, log = run([define(), ChangeCampaignStatus(campaign_id="c1", status="ended"), distribute()])
    assert refusal(log) is Reason.ENDED
    _, log = run([define(validity=Validity(expires_at=NOW)), distribute()])
    assert refusal(log) is Reason.EXPIRED
    _, log = run([define(code=None), distribute()])
    assert refusal(log) is Reason.NO_CODE_AVAILABLE


def add_codes(*codes: str, chunk: int = 0) -> AddCodes:
    return AddCodes(campaign_id="c1", batch_id="b1", chunk=chunk, codes=codes)


def test_added_codes_drop_repeats_and_codes_the_campaign_has_keeping_their_order() -> None:
    _, log = run(
        [
            define(),  # the shared code SPRING
            add_codes("CCCC3333", "AAAA1111"),
            add_codes("DDDD4444", "SPRING", "AAAA1111", "BBBB2222", "DDDD4444", chunk=1),
            add_codes("SPRING", "CCCC3333", chunk=2),  # nothing new: no event
        ]
    )
    added = [e.codes for e in log if isinstance(e, CodesAdded)]
    assert added == [("CCCC3333", "AAAA1111"), ("DDDD4444", "BBBB2222")]


def test_unique_codes_are_handed_out_once_bound_to_their_contact_and_single_use() -> None:
    state, log = run(
        [
            define(code=None, limits=Limits(per_contact=None)),
            add_codes("AAAA1111", "BBBB2222"),
            add_codes("BBBB2222", "CCCC3333", chunk=1),  # a code already there is not added twice
            distribute("alice"),
            distribute("alice"),  # she keeps her code
            distribute("bob"),
        ]
    )
    added = [e for e in log if isinstance(e, CodesAdded)]
    assert [e.codes for e in added] == [("AAAA1111", "BBBB2222"), ("CCCC3333",)]
    given = [(e.contact_id, e.code) for e in log if isinstance(e, CodeDistributed)]
    assert given == [("alice", "AAAA1111"), ("alice", "AAAA1111"), ("bob", "BBBB2222")]
    assert state is not None and state.handed_out == 2

    def redeem_unique(n: int, contact: str, code: str) -> RedeemCode:
        return redeem(n, contact=contact, code=code)

    steps: list[Command] = [
        redeem_unique(1, "bob", "AAAA1111"),
        redeem_unique(2, "alice", "AAAA1111"),
        redeem_unique(3, "alice", "AAAA1111"),
        redeem_unique(4, "carol", "CCCC3333"),  # not handed out yet: anyone may use it
    ]
    outcomes = []
    for command in steps:
        events = decide(state, command, NOW)
        for event in events:
            state = evolve(state, event, NOW)
        outcomes.append(refusal(events))
    assert outcomes == [Reason.BOUND_TO_ANOTHER_CONTACT, None, Reason.CODE_EXHAUSTED, None]


def test_distribution_falls_back_to_the_shared_code_then_refuses() -> None:
    _, log = run([define(), add_codes("AAAA1111"), distribute("alice"), distribute("bob")])
    given = [e.code for e in log if isinstance(e, CodeDistributed)]
    assert given == ["AAAA1111", "SPRING"]
    _, log = run([define(code=None), add_codes("AAAA1111"), distribute("alice"), distribute("bob")])
    assert refusal(log) is Reason.NO_CODE_AVAILABLE


def test_codes_low_is_recorded_once_as_the_stock_crosses_the_mark() -> None:
    limits = {"codes_low_at": 1, "codes_top_up": 10}
    commands: list[Command] = [define(code=None, limits=limits), add_codes("A1AA", "B2BB", "C3CC")]
    commands += [distribute("ann"), distribute("ann"), distribute("bob"), distribute("cy")]
    commands += [add_codes("D4DD", "E5EE", chunk=1), distribute("dee"), distribute("eve")]
    _, log = run(commands)
    low = [(e.remaining, e.top_up) for e in log if isinstance(e, CodesLow)]
    assert low == [(1, 10), (1, 10)]  # bob took the second of 3; after the top-up, dee's


def update(**parts: object) -> UpdateCampaign:
    return UpdateCampaign.model_validate({"campaign_id": "c1", "reason": "tuning", **parts})


def test_an_update_records_only_what_changed_and_why() -> None:
    state, log = run([define(), update(name="Spring", limits=Limits(max_redemptions=1))])
    assert log[-1] == CampaignUpdated(
        campaign_id="c1", limits=Limits(max_redemptions=1), reason="tuning"
    )
    assert state is not None and state.limits.max_redemptions == 1
    _, log = run([define(), update(name="Spring", limits=Limits())])
    assert len(log) == 1, "nothing changed, nothing recorded"


def test_updated_limits_apply_to_later_redemptions_only() -> None:
    state, log = run(
        [define(), redeem(1, "a"), redeem(2, "b"), update(limits=Limits(max_redemptions=1))]
    )
    assert state is not None and state.redemptions == 2
    _, log = run(
        [define(), redeem(1, "a"), update(limits=Limits(max_redemptions=1)), redeem(2, "b")]
    )
    assert refusal(log) == Reason.EXHAUSTED


def test_an_update_keeps_the_expiry_and_refuses_bad_terms() -> None:
    expires = NOW + timedelta(days=30)
    state, _ = run([define(), update(validity=Validity(starts_at=NOW + timedelta(days=1)))])
    assert state is not None and state.validity.expires_at == expires
    _, log = run([define(), update(validity=Validity(starts_at=expires + timedelta(days=1)))])
    assert refusal(log) == Reason.INVALID_TERMS
    percent = PercentOff(percent_off=10)
    _, log = run([define(discount=percent), update(limits=Limits(budget=1000))])
    assert refusal(log) == Reason.INVALID_TERMS
    ended = ChangeCampaignStatus(campaign_id="c1", status="ended")
    _, log = run([define(), ended, update(name="Autumn")])
    assert refusal(log) == Reason.ENDED


def test_a_stacked_redemption_needs_every_code_stackable_and_takes_from_what_is_left() -> None:
    stacked = redeem(1).model_copy(update={"other_codes_stackable": (True,), "already_off": 1800})
    _, log = run([define(), stacked])
    assert refusal(log) == Reason.NOT_STACKABLE, "this campaign is exclusive"
    _, log = run([define(eligibility=Eligibility(stackable=True)), stacked])
    assert isinstance(log[-1], CodeRedeemed)
    assert (log[-1].amount, log[-1].discount, log[-1].total) == (2000, 200, 0)
    alone_with_exclusive = redeem(1).model_copy(update={"other_codes_stackable": (False,)})
    _, log = run([define(eligibility=Eligibility(stackable=True)), alone_with_exclusive])
    assert refusal(log) == Reason.NOT_STACKABLE, "the other code is exclusive"

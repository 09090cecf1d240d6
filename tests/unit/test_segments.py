"""Segment conditions, profile folding and live membership, in memory (pure parts).

The property: membership maintained incrementally (events applied in arrival order, each
contact's timer fired when due) equals membership computed from scratch over the final
profile at the same instant."""

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.contacts import ContactEvent
from services.coupons.contacts.conditions import InvalidCondition, compile_condition
from services.coupons.contacts.membership import Segment, reconcile, segment_reads
from services.coupons.contacts.profile import Profile, evaluation_data, fold, touched

T0 = 1_800_000_000
DAY = 86400


def _event(i: int, at: int, **traits: object) -> ContactEvent:
    return ContactEvent.model_validate(
        {
            "id": f"e{i}",
            "type": "page.viewed",
            "contact_id": "c1",
            "occurred_at": datetime.fromtimestamp(at, UTC),
            "traits": traits,
            "properties": {"path": "/pricing"},
        }
    )


@pytest.mark.parametrize(
    ("tree", "path"),
    [
        ({"frobnicate": [1]}, "/frobnicate"),
        ({"and": [{"==": [1, 1]}, {"var": "now"}]}, "/and/1/var"),
        ({"or": [{"within_next": ["traits.t", -1]}]}, "/or/0/within_next/1"),
        ({"within_next": ["plan", 5]}, "/within_next/0"),
        ({"did_event": {"type": "a", "colour": 1}}, "/did_event/colour"),
        ({"==": [1, 2], "!=": [1, 2]}, "/"),
    ],
)
def test_an_invalid_condition_names_the_path_of_its_fault(tree: object, path: str) -> None:
    with pytest.raises(InvalidCondition) as raised:
        compile_condition(tree)
    assert raised.value.path == path


def test_trial_ending_within_three_days_becomes_true_and_false_to_the_second() -> None:
    condition = compile_condition({"within_next": ["traits.trial_ends_at", 3 * DAY]})
    ends = T0 + 10 * DAY
    profile = fold(Profile("c1"), _event(1, T0, trial_ends_at=_iso(ends)))
    assert not condition.matches(evaluation_data(profile, T0))
    assert condition.next_change(evaluation_data(profile, T0)) == ends - 3 * DAY
    assert not condition.matches(evaluation_data(profile, ends - 3 * DAY - 1))
    assert condition.matches(evaluation_data(profile, ends - 3 * DAY))
    assert condition.next_change(evaluation_data(profile, ends - 3 * DAY)) == ends + 1
    assert condition.matches(evaluation_data(profile, ends))
    assert not condition.matches(evaluation_data(profile, ends + 1))


def test_an_older_trait_never_overwrites_a_newer_one() -> None:
    newer, older = _event(1, T0 + 10, plan="pro"), _event(2, T0, plan="free")
    for order in ((newer, older), (older, newer)):
        profile = Profile("c1")
        for event in order:
            profile = fold(profile, event)
        assert profile.traits["plan"].value == "pro"


def test_event_facts_with_a_property_and_a_window() -> None:
    condition = compile_condition(
        {"did_event": {"type": "page.viewed", "where": {"path": "/pricing"}, "within": 30 * DAY}}
    )
    profile = fold(Profile("c1"), _event(1, T0))
    assert condition.matches(evaluation_data(profile, T0 + 30 * DAY))
    assert not condition.matches(evaluation_data(profile, T0 + 30 * DAY + 1))
    other = compile_condition({"did_event": {"type": "page.viewed", "where": {"path": "/x"}}})
    assert not other.matches(evaluation_data(profile, T0))


_paths = st.sampled_from(["traits.a", "traits.b"])
_leaves = st.one_of(
    st.builds(lambda p, s: {"within_next": [p, s]}, _paths, st.integers(0, 50)),
    st.builds(lambda p, s: {"more_than_ago": [p, s]}, _paths, st.integers(0, 50)),
    st.builds(lambda p, s: {"less_than_ago": [p, s]}, _paths, st.integers(0, 50)),
    st.builds(lambda v: {"==": [{"var": "traits.plan"}, v]}, st.sampled_from(["free", "pro"])),
    st.builds(lambda n: {">=": [{"var": "traits.score"}, n]}, st.integers(0, 10)),
    st.builds(lambda s: {"did_event": {"type": "page.viewed", "within": s}}, st.integers(1, 60)),
    st.just({"exists": "traits.a"}),
    st.just({"missing": ["traits.plan"]}),
)
_conditions = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"!": [x]}, inner),
    ),
    max_leaves=6,
)
_traits = st.fixed_dictionaries(
    {},
    optional={
        "a": st.integers(T0 - 20, T0 + 120).map(
            lambda s: datetime.fromtimestamp(s, UTC).isoformat()
        ),
        "b": st.integers(T0 - 20, T0 + 120).map(
            lambda s: datetime.fromtimestamp(s, UTC).isoformat()
        ),
        "plan": st.sampled_from(["free", "pro", None]),
        "score": st.integers(0, 10),
    },
)
_arrivals = st.lists(
    st.tuples(st.integers(0, 100), st.integers(-30, 0), _traits), min_size=1, max_size=12
)


def _iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


@settings(max_examples=300, deadline=None)
@given(
    trees=st.lists(_conditions, min_size=1, max_size=4), arrivals=_arrivals, end=st.integers(0, 200)
)
def test_incremental_membership_equals_membership_from_scratch(
    trees: list[object], arrivals: list[tuple[int, int, dict[str, object]]], end: int
) -> None:
    segments = {f"s{i}": Segment(f"s{i}", 1, compile_condition(t)) for i, t in enumerate(trees)}
    events = sorted(
        (T0 + arrive, T0 + arrive + skew, i, traits)
        for i, (arrive, skew, traits) in enumerate(arrivals)
    )
    profile, held, due = Profile("c1"), frozenset[str](), None
    final = T0 + end
    reads = segment_reads(segments)  # as store.settle: only the data they read, from scratch all

    def fire_timers_until(instant: int) -> None:
        nonlocal held, due
        while due is not None and due <= instant:
            step = reconcile(profile, segments, held, due, reads=reads)
            assert step.next_due is None or step.next_due > due
            held, due = step.members, step.next_due

    for arrived, occurred, i, traits in events:
        if arrived > final:
            break
        fire_timers_until(arrived)
        event = _event(i, occurred, **traits)
        # as the processor: a new contact against every segment, a known one against those
        # reading what its event changed
        inputs = None if profile == Profile("c1") else touched(event)
        profile = fold(profile, event)
        step = reconcile(profile, segments, held, arrived, inputs, reads)
        held, due = step.members, step.next_due
    fire_timers_until(final)
    if not profile.last_seen:  # no event yet: no contact, in no segment
        assert held == frozenset()
        return
    scratch = reconcile(profile, segments, frozenset(), final).members
    assert held == scratch


def _attempt(segments: frozenset[str]) -> Any:
    from contracts.checkout import Cart, Customer
    from services.coupons.domain.eligibility import Attempt

    return Attempt(
        cart=Cart(currency="EUR", amount=1000),
        customer=Customer(contact_id="c1", email="a@example.com"),
        now=datetime.fromtimestamp(T0, UTC),
        segments=segments,
    )


def test_segment_refusals_come_after_who_the_customer_is_and_in_order() -> None:
    from contracts.money import AmountOff
    from contracts.reasons import Reason
    from contracts.rules import Eligibility
    from services.coupons.domain.eligibility import Offer, Refusal, Usage, assess

    def refusal(member_of: set[str], **rules: Any) -> Reason | None:
        offer = Offer(
            status="active",
            discount=AmountOff(amount_off=100, currency="EUR"),
            eligibility=Eligibility(**rules),
        )
        found = assess(offer, Usage(), _attempt(frozenset(member_of)))
        return found.reason if isinstance(found, Refusal) else None

    assert refusal(set(), segments=("trials",)) == Reason.NOT_IN_SEGMENT
    assert refusal({"trials"}, segments=("trials", "vip")) is None
    assert refusal({"trials", "churned"}, segments=("trials",), excluded_segments=("churned",)) == (
        Reason.EXCLUDED_SEGMENT
    )
    both = {"segments": ("vip",), "excluded_segments": ("churned",)}
    assert refusal({"churned"}, **both) == Reason.NOT_IN_SEGMENT  # the documented order
    assert refusal(set(), email_domains=("other.com",), **both) == Reason.EMAIL_DOMAIN_NOT_ALLOWED
    assert refusal(set()) is None


def test_stored_profiles_and_membership_messages_keep_their_contracts() -> None:
    from contracts.contacts import MembershipChanged
    from services.coupons.contacts import store

    profile = fold(Profile("c1"), _event(1, T0, plan="pro", trial_ends_at=_iso(T0 + DAY)))
    assert store.from_json("c1", store.to_json(profile)) == profile
    message = store._message("entered", "c1", "seg", 2, "e1", datetime.fromtimestamp(T0, UTC))
    assert MembershipChanged.model_validate(message).model_dump(mode="json") == message
    for name in ("entered/seg/2/c1/e1", "left/x/1/c-42/timer:1796489018", "é/😀"):
        assert store.message_id(name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def test_only_the_segments_reading_what_changed_are_evaluated() -> None:
    plan = Segment("plan", 1, compile_condition({"==": [{"var": "traits.plan"}, "pro"]}))
    score = Segment("score", 1, compile_condition({">": [{"var": "traits.score"}, 5]}))
    segments = {"plan": plan, "score": score}
    profile = fold(Profile("c1"), _event(1, T0, plan="pro", score=9))
    # "score" held but no longer true: an event touching only the plan leaves it alone
    changed = fold(profile, _event(2, T0 + 1, plan="free", score=1))
    step = reconcile(
        changed, segments, frozenset({"plan", "score"}), T0 + 1, touched(_event(3, T0, plan="x"))
    )
    assert step.left == ("plan",)
    assert reconcile(changed, segments, frozenset({"plan", "score"}), T0 + 1).left == (
        "plan",
        "score",
    )
    assert plan.condition.inputs == frozenset({"traits.plan"})

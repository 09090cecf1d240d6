"""Daily buckets of event facts and "at least N times in the last D days" (pure parts): the
buckets are bounded and order-independent, the window count flips at the exact midnight the
engine predicts, and timers keep membership equal to membership from scratch."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.contacts import ContactEvent
from services.coupons.contacts import store
from services.coupons.contacts.conditions import BUCKET_DAYS, InvalidCondition, compile_condition
from services.coupons.contacts.membership import Segment, reconcile
from services.coupons.contacts.profile import Profile, add_to_buckets, evaluation_data, fold

DAY = 86400
D0 = 20_800  # a day number (2026-12-14)
T0 = D0 * DAY


def viewed(i: int, at: int, path: str = "/pricing") -> ContactEvent:
    return ContactEvent.model_validate(
        {
            "id": f"e{i}",
            "type": "page.viewed",
            "contact_id": "c1",
            "occurred_at": datetime.fromtimestamp(at, UTC),
            "properties": {"path": path},
        }
    )


def folded(times: list[int]) -> Profile:
    profile = Profile("c1")
    for i, at in enumerate(times):
        profile = fold(profile, viewed(i, at))
    return profile


def test_buckets_count_per_utc_day_and_keep_only_the_last_90_days() -> None:
    profile = folded([T0 - 100 * DAY, T0 - 89 * DAY + 5, T0 + 10, T0 + 20, T0 + DAY - 1])
    (fact, by_path) = profile.facts.values()
    assert fact.label == "page.viewed" and fact.count == 5  # the all-time count stays
    assert fact.days == ((D0 - 89, 1), (D0, 3))  # the day 100 days back is dropped
    assert by_path.days == fact.days
    assert store.from_json("c1", store.to_json(profile)) == profile


@given(st.lists(st.integers(-200, 10), min_size=1, max_size=15), st.randoms())
def test_buckets_do_not_depend_on_the_order_events_arrive_in(days: list[int], rnd: object) -> None:
    times = [T0 + d * DAY + 7 for d in days]
    shuffled = list(times)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert folded(times).facts == folded(shuffled).facts


def test_at_least_three_times_in_the_last_30_days_flips_at_the_midnight_a_day_leaves() -> None:
    condition = compile_condition(
        {
            "did_event": {
                "type": "page.viewed",
                "where": {"path": "/pricing"},
                "at_least": 3,
                "in_last_days": 30,
            }
        }
    )
    # two views 10 days ago, one today: 3 in the window until the day 10 days back leaves it
    profile = folded([T0 - 10 * DAY + 3600, T0 - 10 * DAY + 7200, T0 + 60])
    now = T0 + 120
    assert condition.matches(evaluation_data(profile, now))
    leaves = (D0 - 10 + 30) * DAY  # the day 10 days back is out of the 30 days from here
    assert condition.next_change(evaluation_data(profile, now)) == leaves
    assert condition.matches(evaluation_data(profile, leaves - 1))
    assert not condition.matches(evaluation_data(profile, leaves))
    # false now and no event to come: time alone never makes it true again
    assert condition.next_change(evaluation_data(profile, leaves)) is None
    two = folded([T0 - 10 * DAY, T0])
    assert not condition.matches(evaluation_data(profile=two, now=now))


def test_a_day_in_the_future_counts_from_its_midnight() -> None:
    condition = compile_condition({"did_event": {"type": "page.viewed", "in_last_days": 1}})
    profile = folded([T0 + DAY + 5])  # sent with tomorrow's date
    assert not condition.matches(evaluation_data(profile, T0))
    assert condition.next_change(evaluation_data(profile, T0)) == T0 + DAY
    assert condition.matches(evaluation_data(profile, T0 + DAY))
    assert condition.next_change(evaluation_data(profile, T0 + DAY)) == T0 + 2 * DAY


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({"type": "a", "in_last_days": 0}, "/did_event/in_last_days"),
        ({"type": "a", "in_last_days": 91}, "/did_event/in_last_days"),
        ({"type": "a", "in_last_days": "30"}, "/did_event/in_last_days"),
        ({"type": "a", "in_last_days": 30, "at_least": 0}, "/did_event/at_least"),
    ],
)
def test_a_bad_window_names_its_field(args: dict[str, object], path: str) -> None:
    with pytest.raises(InvalidCondition) as raised:
        compile_condition({"!": [{"did_event": args}]})
    assert raised.value.path == "/!/0" + path


_windows = st.builds(
    lambda d, n: {"did_event": {"type": "page.viewed", "in_last_days": d, "at_least": n}},
    st.integers(1, 90),
    st.integers(1, 4),
)


@settings(max_examples=200, deadline=None)
@given(
    trees=st.lists(
        st.one_of(_windows, st.builds(lambda w: {"!": [w]}, _windows)), min_size=1, max_size=3
    ),
    arrivals=st.lists(st.tuples(st.integers(0, 150), st.integers(-3, 0)), max_size=10),
    end=st.integers(0, 300),
)
def test_windows_kept_by_timers_equal_membership_from_scratch(
    trees: list[object], arrivals: list[tuple[int, int]], end: int
) -> None:
    """Events arrive on random days (some dated a few days back); timers fire when due."""
    segments = {f"s{i}": Segment(f"s{i}", 1, compile_condition(t)) for i, t in enumerate(trees)}
    events = sorted((T0 + a * DAY + 100, T0 + (a + skew) * DAY + 50) for a, skew in arrivals)
    profile, held, due = Profile("c1"), frozenset[str](), None
    final = T0 + end * DAY

    def fire_timers_until(instant: int) -> None:
        nonlocal held, due
        while due is not None and due <= instant:
            step = reconcile(profile, segments, held, due)
            assert step.next_due is None or step.next_due > due
            held, due = step.members, step.next_due

    for i, (arrived, occurred) in enumerate(events):
        if arrived > final:
            break
        fire_timers_until(arrived)
        profile = fold(profile, viewed(i, occurred))
        step = reconcile(profile, segments, held, arrived)
        held, due = step.members, step.next_due
    fire_timers_until(final)
    if profile.last_seen is None:
        return
    assert held == reconcile(profile, segments, frozenset(), final).members


def _buckets_from_scratch(
    days: tuple[tuple[int, int], ...], day: int, newest: int
) -> tuple[tuple[int, int], ...]:
    counts = dict(days)
    counts[day] = counts.get(day, 0) + 1
    return tuple(sorted((d, c) for d, c in counts.items() if d >= newest - BUCKET_DAYS + 1))


@given(st.lists(st.integers(D0 - 120, D0), max_size=20), st.integers(D0 - 120, D0))
def test_another_event_on_the_newest_day_is_counted_as_from_scratch(
    earlier: list[int], day: int
) -> None:
    """`add_to_buckets` takes a short cut for another event on the last bucket's day."""
    days: tuple[tuple[int, int], ...] = ()
    newest = max([*earlier, day])
    for d in earlier:
        days = add_to_buckets(days, d, max(d, days[-1][0] if days else d))
    for _ in range(3):  # the same day again, as most folds are
        expected = _buckets_from_scratch(days, day, newest)
        days = add_to_buckets(days, day, newest)
        assert days == expected

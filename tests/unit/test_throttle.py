"""The counting of code guesses (domain.guessing) and the in-memory block list."""

import pytest

from services.coupons.domain.guessing import (
    Count,
    Kind,
    Limit,
    Limits,
    estimate,
    over,
    retry_after,
    shopper_network,
    subject,
    subjects_of,
    wait_s,
)
from services.coupons.throttle import Throttle

TEN_A_MINUTE = Limit(10, 60)


def test_the_previous_window_weighs_by_its_overlap() -> None:
    assert estimate(Count(previous=8, current=4, elapsed_s=15), TEN_A_MINUTE) == 10
    assert estimate(Count(previous=8, current=4, elapsed_s=60), TEN_A_MINUTE) == 4


def test_the_tenth_failure_is_answered_and_blocks_the_eleventh() -> None:
    for n in range(1, 10):
        count = Count(previous=0, current=n, elapsed_s=30)
        assert not over(count, TEN_A_MINUTE) and wait_s(count, TEN_A_MINUTE) == 0
    tenth = Count(previous=0, current=10, elapsed_s=30)
    assert not over(tenth, TEN_A_MINUTE)
    # blocked to the end of the window, then until 10 x (1 - t/60) <= 9: 6 s into the next
    assert wait_s(tenth, TEN_A_MINUTE) == pytest.approx(30 + 6)
    assert over(Count(previous=0, current=11, elapsed_s=30), TEN_A_MINUTE)


def test_the_docstring_example_waits_until_the_previous_window_fades() -> None:
    count = Count(previous=8, current=4, elapsed_s=15)
    assert not over(count, TEN_A_MINUTE)
    assert wait_s(count, TEN_A_MINUTE) == pytest.approx(7.5)
    # and once waited, one more failure fits exactly
    later = Count(previous=8, current=5, elapsed_s=22.5)
    assert estimate(later, TEN_A_MINUTE) == pytest.approx(10) and not over(later, TEN_A_MINUTE)


def test_a_limit_of_one_blocks_to_the_end_of_the_next_window() -> None:
    one = Limit(1, 10)
    assert wait_s(Count(previous=0, current=1, elapsed_s=4), one) == pytest.approx(6 + 10)
    assert wait_s(Count(previous=1, current=0, elapsed_s=4), one) == pytest.approx(6)


def test_a_steady_guesser_gets_the_limit_per_window_and_no_more() -> None:
    """Simulated: a guesser retries the moment it is let in, for ten windows."""
    limit, window = TEN_A_MINUTE, TEN_A_MINUTE.window_s
    counts: dict[int, int] = {}
    t, answered = 0.0, 0
    while t < 10 * window:
        no = int(t // window)
        counts[no] = counts.get(no, 0) + 1
        count = Count(counts.get(no - 1, 0), counts[no], t - no * window)
        assert not over(count, limit)  # it only ever tries when let in
        answered += 1
        t += max(wait_s(count, limit), 0.001)
    assert 9 * limit.failures <= answered <= 11 * limit.failures


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert retry_after(0.2) == 1 and retry_after(7.5) == 8 and retry_after(3.0) == 3


def test_shopper_addresses_are_ips_and_ipv6_counts_per_network() -> None:
    assert shopper_network(" 203.0.113.7 ") == "203.0.113.7"
    assert shopper_network("2001:db8::1") == shopper_network("2001:db8::ffff:1") == "2001:db8::/64"
    assert shopper_network("::ffff:203.0.113.7") == "203.0.113.7"
    for bad in ("", "localhost", "203.0.113.7, 10.0.0.1", "300.1.1.1"):
        with pytest.raises(ValueError):
            shopper_network(bad)


def test_subjects_name_no_one_and_have_their_own_limits() -> None:
    found = subjects_of("key_1 (shop)", "c_42", "203.0.113.7")
    assert found == sorted(found) and len(set(found)) == 3
    assert not any("c_42" in s or "203.0.113.7" in s for s in found)
    assert subjects_of("key_1 (shop)", "c_42", None) == sorted(
        [subject(Kind.KEY, "key_1 (shop)"), subject(Kind.CONTACT, "c_42")]
    )
    limits = Limits(Limit(1, 60), Limit(2, 60), Limit(3, 60))
    assert limits.of(subject(Kind.CONTACT, "x")).failures == 1
    assert limits.of(subject(Kind.ADDRESS, "x")).failures == 2
    assert limits.of(subject(Kind.KEY, "x")).failures == 3


def test_the_block_list_refuses_until_the_deadline_then_forgets() -> None:
    now = [100.0]
    throttle = Throttle(
        Limits(TEN_A_MINUTE, TEN_A_MINUTE, TEN_A_MINUTE),
        None,
        "",
        clock=lambda: now[0],  # type: ignore[arg-type]
    )
    assert throttle.wait_s("k", "c_1", None) is None
    throttle._on_announced(None, 0, "", f"7.5 {subject(Kind.CONTACT, 'c_1')}")  # type: ignore[arg-type]
    assert throttle.wait_s("k", "c_1", None) == pytest.approx(7.5)
    assert throttle.wait_s("k", "c_2", None) is None  # another shopper, same key
    now[0] += 7.5
    assert throttle.wait_s("k", "c_1", None) is None
    assert not throttle._blocked

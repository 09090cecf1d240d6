import random
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from contracts.rules import CodePattern
from services.coupons.domain.codes import (
    PatternReason,
    PatternTooWeak,
    check_pattern,
    entropy_bits,
    format_code,
    generate,
    normal_form,
    normalise,
    space_size,
)


def regex_for(pattern: CodePattern) -> re.Pattern[str]:
    char = f"[{re.escape(pattern.alphabet)}]"
    groups = (
        [pattern.length]
        if pattern.group == 0
        else [
            min(pattern.group, pattern.length - i) for i in range(0, pattern.length, pattern.group)
        ]
    )
    body = "-".join(f"{char}{{{n}}}" for n in groups)
    return re.compile(f"^{re.escape(pattern.prefix)}{body}$")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("abcd-efgh", "ABCDEFGH"),
        ("ABCDEFGH", "ABCDEFGH"),
        ("  abcd efgh\t", "ABCDEFGH"),
        ("ab_cd--ef gh", "ABCDEFGH"),
        ("Summer-2025", "SUMMER2025"),
    ],
)
def test_normalise(raw: str, normal: str) -> None:
    assert normalise(raw) == normal


@pytest.mark.parametrize("prefix", ["", "PH", "SUMMER-26-"])
def test_the_normal_form_of_a_pattern_gives_its_codes_normalised(prefix: str) -> None:
    pattern = CodePattern(prefix=prefix, length=12, group=4)
    formatted = generate(pattern, 500, random.Random(7))
    normal = generate(normal_form(pattern), 500, random.Random(7))
    assert list(normal) == [normalise(code) for code in formatted]


@given(st.text())
def test_normalise_is_idempotent(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)


@given(st.text() | st.text("aZ9-_ \t\u00e9\u0660\u2028\u3000"))
def test_normalise_takes_out_every_separator_and_only_them(text: str) -> None:
    """Its shortcut for a code without separators agrees with the rule it skips."""
    assert normalise(text) == re.sub(r"[\s_-]+", "", text).upper()


def test_default_pattern_has_60_bits() -> None:
    pattern = CodePattern()
    assert entropy_bits(pattern) == 60.0
    assert space_size(pattern) == 32**12
    check_pattern(pattern, 1_000_000)


def test_default_alphabet_avoids_lookalikes() -> None:
    # L stays: without it the alphabet has 31 letters and 12 characters give under 60 bits.
    assert not set("01OI") & set(CodePattern().alphabet)
    assert len(set(CodePattern().alphabet)) == 32


@pytest.mark.parametrize(
    ("pattern", "count", "reason"),
    [
        (CodePattern(length=8), 1, PatternReason.CODE_ENTROPY_TOO_LOW),  # 40 bits
        (CodePattern(alphabet="AB", length=59), 1, PatternReason.CODE_ENTROPY_TOO_LOW),
        (CodePattern(length=12), 32**12 // 1000 + 1, PatternReason.CODE_SPACE_TOO_SMALL),
        (CodePattern(alphabet="AAB", length=64), 1, PatternReason.ALPHABET_INVALID),
        (CodePattern(alphabet="abc", length=64), 1, PatternReason.ALPHABET_INVALID),
        (CodePattern(alphabet="AB-C", length=64), 1, PatternReason.ALPHABET_INVALID),
        (CodePattern(alphabet="A", length=64), 1, PatternReason.ALPHABET_INVALID),
    ],
)
def test_weak_patterns_are_refused_with_a_stable_reason(
    pattern: CodePattern, count: int, reason: PatternReason
) -> None:
    with pytest.raises(PatternTooWeak) as caught:
        check_pattern(pattern, count)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_space_must_be_a_thousand_times_the_count() -> None:
    pattern = CodePattern(length=12)
    check_pattern(pattern, 32**12 // 1000)
    with pytest.raises(PatternTooWeak):
        check_pattern(pattern, 32**12 // 1000 + 1)


def test_generate_refuses_at_the_call_not_on_first_use() -> None:
    with pytest.raises(PatternTooWeak):
        generate(CodePattern(length=6), 10)


@pytest.mark.parametrize(
    ("prefix", "raw", "group", "code"),
    [
        ("", "ABCDEFGHJKMN", 4, "ABCD-EFGH-JKMN"),
        ("SUMMER-", "ABCDEFGHJK", 4, "SUMMER-ABCD-EFGH-JK"),
        ("X", "ABCDEF", 0, "XABCDEF"),
        ("", "ABC", 5, "ABC"),
    ],
)
def test_format_code(prefix: str, raw: str, group: int, code: str) -> None:
    assert format_code(prefix, raw, group) == code


patterns = st.builds(
    CodePattern,
    prefix=st.from_regex(r"[A-Z0-9-]{0,16}", fullmatch=True),
    length=st.integers(15, 64),
    alphabet=st.sampled_from(
        ["23456789ABCDEFGHJKLMNPQRSTUVWXYZ", "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"]
    ),
    group=st.integers(0, 20),
)


@settings(max_examples=60, deadline=None)
@given(patterns, st.integers(0, 300), st.integers())
def test_generated_codes_are_distinct_and_match_the_pattern(
    pattern: CodePattern, count: int, seed: int
) -> None:
    check_pattern_or_skip(pattern, count)
    codes = list(generate(pattern, count, random.Random(seed), min_bits=40))
    assert len(codes) == count
    assert len(set(codes)) == count
    assert len({normalise(code) for code in codes}) == count
    shape = regex_for(pattern)
    for code in codes:
        assert shape.match(code), code
        assert normalise(normalise(code)) == normalise(code)
        raw = normalise(code)[len(normalise(pattern.prefix)) :]
        assert format_code(pattern.prefix, raw, pattern.group) == code


def check_pattern_or_skip(pattern: CodePattern, count: int) -> None:
    try:
        check_pattern(pattern, count, min_bits=40)
    except PatternTooWeak:
        assume(False)


def test_generation_is_reproducible_with_a_seed() -> None:
    first = list(generate(CodePattern(), 100, random.Random(7)))
    assert first == list(generate(CodePattern(), 100, random.Random(7)))
    assert first != list(generate(CodePattern(), 100, random.Random(8)))


class DuplicatingRandom(random.Random):
    """Every draw is its first half twice over, so each batch is full of duplicates."""

    calls = 0

    def randbytes(self, n: int) -> bytes:
        self.calls += 1
        return (super().randbytes((n + 1) // 2) * 2)[:n]


def test_duplicates_within_a_batch_are_dropped_and_replaced() -> None:
    rng = DuplicatingRandom(1)
    codes = list(generate(CodePattern(group=0), 48, rng))
    assert len(codes) == len(set(codes)) == 48
    assert rng.calls > 1  # the first draw only held 24 distinct codes


def test_every_character_of_the_alphabet_is_used_evenly() -> None:
    pattern = CodePattern(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", length=16, group=0)
    text = "".join(generate(pattern, 20_000, random.Random(3)))
    counts = [text.count(c) for c in pattern.alphabet]
    expected = len(text) / 36
    assert all(abs(n - expected) < expected * 0.05 for n in counts), counts


def test_defaults_to_the_system_rng() -> None:
    codes = list(generate(CodePattern(prefix="VIP-"), 3))
    assert len(set(codes)) == 3
    assert all(regex_for(CodePattern(prefix="VIP-")).match(c) for c in codes)

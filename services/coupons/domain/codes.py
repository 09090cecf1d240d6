"""Coupon codes: how they are written, compared and generated.

A code is compared in its normal form (`normalise`): upper case, with no spaces, dashes or
underscores, so "abcd-efgh" and "ABCD EFGH" are the same code. Generated codes come from a
cryptographic RNG by default so they cannot be guessed, and a pattern is refused unless it
is hard to guess (`min_bits` of entropy) and roomy enough that random codes rarely collide.
"""

import math
import random
import re
import secrets
import string
from collections.abc import Iterator
from enum import StrEnum

from contracts.rules import CodePattern

MIN_BITS = 60.0
"""Default guessing resistance: 12 characters of the default 32-letter alphabet."""
SPACE_FACTOR = 1000
"""The code space must be at least this many times the number of codes asked for."""
BATCH = 1 << 16
"""Codes drawn per round: large enough to be fast, small enough to stream."""

_SEPARATORS = re.compile(r"[\s_-]+")
_ALLOWED = frozenset(string.ascii_uppercase + string.digits)
_SLOT = "?"  # placeholder for one random character; never in a prefix or an alphabet


class PatternReason(StrEnum):
    """Stable reasons a code pattern is refused."""

    CODE_ENTROPY_TOO_LOW = "code_entropy_too_low"
    CODE_SPACE_TOO_SMALL = "code_space_too_small"
    ALPHABET_INVALID = "alphabet_invalid"


class PatternTooWeak(ValueError):
    """The pattern cannot safely produce the codes asked for."""

    def __init__(self, reason: PatternReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def normalise(code: str) -> str:
    """The form codes are stored and looked up in. Idempotent."""
    if code.isalnum():  # no separator to take out (the usual code): no regex
        return code.upper()
    return _SEPARATORS.sub("", code).upper()


def normal_form(pattern: CodePattern) -> CodePattern:
    """The pattern whose codes are those of `pattern` normalised: to generate codes to store
    without normalising each one."""
    return pattern.model_copy(update={"prefix": normalise(pattern.prefix), "group": 0})


def entropy_bits(pattern: CodePattern) -> float:
    """Bits an attacker must guess for one code (the prefix is public, so it adds none)."""
    return pattern.length * math.log2(len(pattern.alphabet))


def space_size(pattern: CodePattern) -> int:
    """How many different codes the pattern can produce."""
    return int(len(pattern.alphabet) ** pattern.length)


def check_pattern(pattern: CodePattern, count: int, min_bits: float = MIN_BITS) -> None:
    """Raise PatternTooWeak unless `pattern` can give `count` hard-to-guess codes."""
    alphabet = pattern.alphabet
    if len(alphabet) < 2 or len(set(alphabet)) != len(alphabet) or set(alphabet) - _ALLOWED:
        raise PatternTooWeak(
            PatternReason.ALPHABET_INVALID,
            f"alphabet {alphabet!r} must be 2+ distinct characters from A-Z and 0-9",
        )
    bits = entropy_bits(pattern)
    if bits < min_bits:
        raise PatternTooWeak(
            PatternReason.CODE_ENTROPY_TOO_LOW, f"{bits:.1f} bits, at least {min_bits} needed"
        )
    if count * SPACE_FACTOR > space_size(pattern):
        raise PatternTooWeak(
            PatternReason.CODE_SPACE_TOO_SMALL,
            f"{count} codes need a space of {count * SPACE_FACTOR}, pattern has "
            f"{space_size(pattern)}",
        )


def format_code(prefix: str, raw: str, group: int) -> str:
    """`prefix` (verbatim) then `raw` with a '-' every `group` characters (0: none)."""
    if group <= 0:
        return prefix + raw
    return prefix + "-".join(raw[i : i + group] for i in range(0, len(raw), group))


def generate(
    pattern: CodePattern,
    count: int,
    rng: random.Random | None = None,
    *,
    min_bits: float = MIN_BITS,
) -> Iterator[str]:
    """`count` distinct formatted codes, drawn lazily in batches. The pattern is checked at
    the call (`check_pattern`), before anything is drawn.

    `rng` defaults to `secrets.SystemRandom()`; pass a seeded `random.Random` for
    reproducible tests. Uniqueness is within this batch only: codes already issued by other
    batches must be excluded by whoever stores them.

    Fast because the work is done on whole batches in C: random bytes are mapped onto the
    alphabet by `bytes.translate` (rejecting bytes above the largest multiple of the alphabet
    size, so every character is equally likely) and scattered into a repeated template."""
    if count < 0:
        raise ValueError("count must not be negative")
    check_pattern(pattern, count, min_bits)  # here, not on first next(): fail at the call
    return _draw(pattern, count, rng if rng is not None else secrets.SystemRandom())


def _draw(pattern: CodePattern, count: int, rng: random.Random) -> Iterator[str]:
    table, rejected = _byte_map(pattern.alphabet)
    template = format_code(pattern.prefix, _SLOT * pattern.length, pattern.group) + "\n"
    slots = [i for i, char in enumerate(template) if char == _SLOT]
    width, length = len(template), pattern.length
    seen: set[str] = set()
    while len(seen) < count:
        size = min(count - len(seen), BATCH)
        chars = b""
        while len(chars) < size * length:
            chars += rng.randbytes(size * length - len(chars)).translate(table, rejected)
        lines = bytearray(template.encode("ascii") * size)
        for position, slot in enumerate(slots):
            lines[slot::width] = chars[position::length]
        drawn = lines.decode("ascii").split("\n")[:-1]
        fresh = [code for code in dict.fromkeys(drawn) if code not in seen]
        seen.update(fresh)
        yield from fresh


def _byte_map(alphabet: str) -> tuple[bytes, bytes]:
    """A `bytes.translate` table sending byte b to alphabet[b % n], and the bytes to drop
    (those at or above the largest multiple of n) so the mapping stays uniform."""
    n = len(alphabet)
    limit = 256 // n * n
    table = bytes(ord(alphabet[b % n]) if b < limit else 0 for b in range(256))
    return table, bytes(range(limit, 256))

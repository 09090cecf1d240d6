"""Counting code guesses: who is guessing, and how long they must wait. Pure, no I/O.

A checkout refusal reveals a guess only when it says the code does not exist
(`unknown_code`) or is someone else's (`bound_to_another_contact`); every other refusal
(exhausted, per-contact limit, below minimum, ...) is about a code the caller already has,
so it is never counted: a flash sale cannot throttle anyone.

Guesses are counted per *subject*: the shopper's contact id, the shopper's own address when
the merchant forwards it, and the API key (a much higher ceiling). Each subject allows
`Limit.failures` guesses per sliding `Limit.window_s`, estimated as Cloudflare and the
`limits` library do (the "sliding window counter"): the previous fixed window's count,
weighted by how much of it still overlaps the sliding window, plus the current window's
count. Worked example, 10 failures per 60 s: 8 failures in the previous window and 4 in
this one, 15 s into it, count 8 x 45/60 + 4 = 10; the next failure would be the 11th, so
the subject waits until the estimate falls to 9: 8 x (1 - t/60) + 4 <= 9 at t = 22.5 s,
7.5 s from now.
"""

import hashlib
import ipaddress
import math
from dataclasses import dataclass
from enum import StrEnum

from contracts.reasons import Reason

GUESSES = frozenset({Reason.UNKNOWN_CODE.value, Reason.BOUND_TO_ANOTHER_CONTACT.value})
"""The refusals that reveal guessing; the only ones counted."""

ROUNDING = 1e-6  # a subject let in after waiting `wait_s` is not "over" by a float's error
IPV6_PREFIX = 64  # one subscriber's IPv6 network: a guesser picks any address inside it


class Kind(StrEnum):
    CONTACT = "c"
    ADDRESS = "a"
    KEY = "k"


@dataclass(frozen=True)
class Limit:
    failures: int
    window_s: float


@dataclass(frozen=True)
class Limits:
    contact: Limit
    address: Limit
    key: Limit

    def of(self, subject: str) -> Limit:
        kind = Kind(subject.split(":", 1)[0])
        return {Kind.CONTACT: self.contact, Kind.ADDRESS: self.address, Kind.KEY: self.key}[kind]


def subject(kind: Kind, value: str) -> str:
    """`kind:digest`: a fixed-size name that keeps no contact id or address in the database
    or in notifications."""
    return f"{kind.value}:{hashlib.blake2b(value.encode(), digest_size=12).hexdigest()}"


def shopper_network(address: str) -> str:
    """The shopper's address as counted: an IPv4 address itself, an IPv6 address's /64
    network. Raises ValueError for anything that is not an IP address."""
    parsed = ipaddress.ip_address(address.strip())
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/{IPV6_PREFIX}", strict=False))
    return str(parsed)


def subjects_of(key: str, contact_id: str, shopper_address: str | None) -> list[str]:
    """Who a checkout call counts against, sorted (a fixed order of row locks: no deadlock
    between two calls counting the same subjects)."""
    found = [subject(Kind.KEY, key), subject(Kind.CONTACT, contact_id)]
    if shopper_address is not None:
        found.append(subject(Kind.ADDRESS, shopper_address))
    return sorted(found)


@dataclass(frozen=True)
class Count:
    """A subject's failures in the current fixed window and the one before, `elapsed_s`
    into the current one."""

    previous: int
    current: int
    elapsed_s: float


def estimate(count: Count, limit: Limit) -> float:
    overlap = max(0.0, 1 - count.elapsed_s / limit.window_s)
    return count.previous * overlap + count.current


def over(count: Count, limit: Limit) -> bool:
    """Whether the failure just counted went past the allowance (its answer is withheld)."""
    return estimate(count, limit) > limit.failures + ROUNDING


def wait_s(count: Count, limit: Limit) -> float:
    """Seconds until the subject's next failure would be within the allowance, if no other
    failure is counted meanwhile; 0 if it is now."""
    allowed = limit.failures - 1  # the estimate at or under which one more failure fits
    window = limit.window_s
    if estimate(count, limit) <= allowed + ROUNDING:
        return 0.0
    if count.current <= allowed:  # the previous window's weight fades enough in this one
        fades_at = window * (1 - (allowed - count.current) / count.previous)
        return max(0.0, fades_at - count.elapsed_s)
    # this window's own failures are too many: wait for the next, then for them to fade
    return (window - count.elapsed_s) + window * (1 - allowed / count.current)


def retry_after(wait: float) -> int:
    """`Retry-After` in whole seconds, never 0."""
    return max(1, math.ceil(wait))

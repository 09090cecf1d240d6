"""A contact's profile, folded from its lifecycle events and our coupon facts. Pure.

Folding commutes, so redelivered and reordered events give the same profile: a trait keeps the
value of the newest event that set it, ordered by (`occurred_at`, event id); counts add up
(the caller skips event ids it has already applied); first/last seen are a min and a max.
Each fact keeps daily buckets (events per UTC day) for the 90 days up to its newest event:
older days are dropped on fold, whatever the order the events came in.
"""

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from contracts.contacts import ContactEvent
from services.coupons.contacts.conditions import BUCKET_DAYS, DAY, label_key

_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


@dataclass(frozen=True)
class Trait:
    value: Any
    set_at: int
    """Epoch seconds of the event that set it (its `occurred_at`)."""
    set_by: str


@dataclass(frozen=True)
class Fact:
    """An event type (or type with one property value): how often, the last time, and how
    often per UTC day (day number: epoch seconds // 86400) over the BUCKET_DAYS days up to
    the last time, oldest first."""

    label: str
    count: int
    last_at: int
    days: tuple[tuple[int, int], ...] = ()


def add_to_buckets(
    days: tuple[tuple[int, int], ...], day: int, newest: int
) -> tuple[tuple[int, int], ...]:
    """`days` with one more event on `day`, without the days before the window that ends
    on `newest` (the day of the fact's last event). Pure; commutes."""
    oldest = newest - BUCKET_DAYS + 1
    if days and days[-1][0] == day and days[0][0] >= oldest:  # another event today: most folds
        return (*days[:-1], (day, days[-1][1] + 1))
    counts = dict(days)
    counts[day] = counts.get(day, 0) + 1
    return tuple(sorted((d, c) for d, c in counts.items() if d >= oldest))


@dataclass(frozen=True)
class CouponFacts:
    received: int = 0
    redeemed: int = 0
    last_redeemed_at: int | None = None
    discount: int = 0
    revenue: int = 0
    campaigns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    contact_id: str
    email: str | None = None
    email_set_at: int = 0
    traits: dict[str, Trait] = field(default_factory=dict)
    first_seen: int | None = None
    last_seen: int | None = None
    facts: dict[str, Fact] = field(default_factory=dict)
    coupons: CouponFacts = field(default_factory=CouponFacts)


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def fold(profile: Profile, event: ContactEvent) -> Profile:
    """The profile after `event` (not yet applied to it)."""
    at = epoch(event.occurred_at)
    traits = dict(profile.traits)
    for name, value in event.traits.items():
        old = traits.get(name)
        if old is None or (at, event.id) > (old.set_at, old.set_by):
            traits[name] = Trait(value, at, event.id)
    email, email_at = profile.email, profile.email_set_at
    if event.email is not None and (email is None or at >= email_at):
        email, email_at = event.email, at
    facts = dict(profile.facts)
    for label, key in _fact_keys(event):
        old_fact = facts.get(key)
        if old_fact is None:
            facts[key] = Fact(label, 1, at, ((at // DAY, 1),))
        else:
            last = max(old_fact.last_at, at)
            days = add_to_buckets(old_fact.days, at // DAY, last // DAY)
            facts[key] = Fact(label, old_fact.count + 1, last, days)
    return replace(
        profile,
        email=email,
        email_set_at=email_at,
        traits=traits,
        first_seen=at if profile.first_seen is None else min(profile.first_seen, at),
        last_seen=at if profile.last_seen is None else max(profile.last_seen, at),
        facts=facts,
    )


COUPON_INPUTS = frozenset(
    f"coupons.{name}"
    for name in ("received", "redeemed", "last_redeemed_at", "discount", "revenue", "campaigns")
)
"""The inputs a coupon fact can change (conditions.Condition.inputs)."""


def touched(event: ContactEvent) -> frozenset[str]:
    """The condition inputs (conditions.Condition.inputs) that folding `event` can change."""
    found = {f"traits.{name}" for name in event.traits}
    found.update(f"events.{key}" for _, key in _fact_keys(event))
    if event.email is not None:
        found.add("email")
    return frozenset(found)


def _fact_keys(event: ContactEvent) -> list[tuple[str, str]]:
    """(label, conditions.fact_key) of each fact `event` counts in."""
    keys = [(event.type, label_key(event.type))]
    for name, value in event.properties.items():
        if value is not None:
            label = f"{event.type}|{name}={value!r}"
            keys.append((label, label_key(label)))
    return keys


def evaluation_data(
    profile: Profile, now: int, reads: frozenset[str] | None = None
) -> dict[str, Any]:
    """What a condition sees (services.coupons.contacts.conditions); unset traits absent.
    With `reads` (the `root.name` inputs of the conditions to evaluate, conditions.Condition
    .reads), only the traits and event facts they read: building and handing the engine a
    contact's every fact costs more than evaluating (docs/performance/contacts.md)."""
    today = now // DAY
    all_traits = reads is None or "traits" in reads
    all_events = reads is None or "events" in reads
    names = reads or frozenset()
    return {
        "now": now,
        "contact_id": profile.contact_id,
        "email": profile.email,
        "traits": {
            n: comparable(t.value)
            for n, t in profile.traits.items()
            if t.value is not None and (all_traits or f"traits.{n}" in names)
        },
        "events": {
            k: {
                "count": f.count,
                "last_at": f.last_at,
                "days": [[today - d, c] for d, c in f.days],  # [age in days, count]
            }
            for k, f in profile.facts.items()
            if all_events or f"events.{k}" in names
        },
        "coupons": {
            "received": profile.coupons.received,
            "redeemed": profile.coupons.redeemed,
            "last_redeemed_at": profile.coupons.last_redeemed_at,
            "discount": profile.coupons.discount,
            "revenue": profile.coupons.revenue,
            "campaigns": list(profile.coupons.campaigns),
        },
    }


def comparable(value: Any) -> Any:
    """ISO-8601 text with a zone is a timestamp: epoch seconds."""
    if isinstance(value, str) and _ISO.match(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if parsed.tzinfo is not None:
            return epoch(parsed)
    return value

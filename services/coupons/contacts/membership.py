"""Which segments a contact belongs to, and when to look again. Pure.

`reconcile` is the one step the contacts processor (on an event), the timer loop (on a due
timer) and a backfill run: evaluate each live segment over the profile at `now`, compare with
the memberships held, and say who entered, who left, and the next instant time alone can
change any answer (the contact's one durable timer)."""

from collections.abc import Mapping
from dataclasses import dataclass

from services.coupons.contacts.conditions import Condition, prepared, session
from services.coupons.contacts.profile import Profile, evaluation_data


@dataclass(frozen=True)
class Segment:
    id: str
    version: int
    condition: Condition


@dataclass(frozen=True)
class Reconciled:
    members: frozenset[str]
    entered: tuple[Segment, ...]
    left: tuple[str, ...]
    next_due: int | None


def reconcile(
    profile: Profile,
    segments: Mapping[str, Segment],
    held: frozenset[str],
    now: int,
    touched: frozenset[str] | None = None,
    reads: frozenset[str] | None = None,
) -> Reconciled:
    """Membership of `profile` in the live `segments` at `now`; `held` is what was stored.
    A held segment no longer live (archived, deleted) is left alone: not re-evaluated.

    With `touched` (the inputs the events just applied changed, `profile.touched`), only the
    segments that read one of them, or whose answer time alone can change, are evaluated:
    the others' answers cannot have changed since they were last evaluated. The next instant
    is still the earliest over every segment (the contact has one timer). `reads`
    (`segment_reads(segments)`, once for many contacts): the data the segments read, to
    build only that; None, all of it."""
    data = evaluation_data(profile, now, reads)
    handle, on = prepared(data), session()
    members = set(held)
    entered, left = [], []
    due: list[int] = []
    for segment in segments.values():
        condition = segment.condition
        if touched is not None and not condition.timed and not condition.reads_any(touched):
            continue
        inside = condition.holds(handle, on)
        if inside and segment.id not in held:
            members.add(segment.id)
            entered.append(segment)
        elif not inside and segment.id in held:
            members.discard(segment.id)
            left.append(segment.id)
        change = condition.next_change(data)
        if change is not None:
            due.append(change)
    return Reconciled(frozenset(members), tuple(entered), tuple(left), min(due, default=None))


def segment_reads(segments: Mapping[str, Segment]) -> frozenset[str] | None:
    """What the `segments` read (conditions.Condition.reads); None if one cannot tell."""
    found: set[str] = set()
    for segment in segments.values():
        reads = segment.condition.reads
        if reads is None:
            return None
        found.update(reads)
    return frozenset(found)

"""Which automations a contact's change fires, and when time alone will fire one. Pure.

Called by the contacts processor (events applied) and the timer loop (a due timer), inside
the transaction that settles the contact, so a trigger is recorded exactly once with the
change that caused it. An occurrence names what fired (the event id, the segment change,
the trait's value for a moment): the same occurrence never makes a second run."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from contracts.automations import EventTrigger, MomentTrigger, SegmentTrigger
from services.coupons.automations.automation import Automation
from services.coupons.contacts.profile import Profile, comparable, evaluation_data
from services.coupons.contacts.reactions import Change


@dataclass(frozen=True)
class Fired:
    automation: Automation
    contact_id: str
    occurrence: str
    cause: str
    holds: bool = True
    """Whether the automation's condition held when it fired (it is checked again when the
    run is due, after any delay)."""


@dataclass(frozen=True)
class Triggers:
    """The automations by what fires them, indexed once for a batch of changes: a change is
    matched against the automations its events and segment moves name, not each one (with
    20 automations, looping over all of them per change was most of the trigger's cost)."""

    events: Mapping[str, Sequence[Automation]]
    segments: Mapping[tuple[str, str], Sequence[Automation]]
    """By (trigger kind, segment id)."""
    moments: Sequence[tuple[Automation, MomentTrigger]]

    @classmethod
    def of(cls, automations: Sequence[Automation]) -> "Triggers":
        events: dict[str, list[Automation]] = {}
        segments: dict[tuple[str, str], list[Automation]] = {}
        moments: list[tuple[Automation, MomentTrigger]] = []
        for automation in automations:
            match automation.definition.trigger:
                case EventTrigger(event_type=wanted):
                    events.setdefault(wanted, []).append(automation)
                case SegmentTrigger(kind=kind, segment_id=segment):
                    segments.setdefault((kind, segment), []).append(automation)
                case MomentTrigger() as trigger:
                    moments.append((automation, trigger))
        return cls(events, segments, moments)

    def fired(self, change: Change, now: int) -> list[Fired]:
        """The triggers `change` fires at `now` (epoch seconds) among the live automations."""
        at = datetime.fromtimestamp(now, UTC)
        contact = change.profile.contact_id
        found = [
            Fired(automation, contact, f"event:{e.id}", e.id)
            for e in change.events
            for automation in self.events.get(e.type, ())
        ]
        for kind, moved in (("entered_segment", change.entered), ("left_segment", change.left)):
            for segment in moved:
                occurrence = f"{kind}:{change.cause}"
                found += [
                    Fired(automation, contact, occurrence, change.cause)
                    for automation in self.segments.get((kind, segment), ())
                ]
        for automation, trigger in self.moments:
            moment = moment_of(trigger, change.profile)
            if moment is not None and moment <= now <= moment + trigger.catch_up_s:
                cause = f"moment:{trigger.trait}:{moment}"
                found.append(Fired(automation, contact, cause, cause))
        found = [f for f in found if f.automation.live_at(at)]
        if any(f.automation.condition is not None for f in found):
            data = evaluation_data(change.profile, now)
            found = [
                f
                if f.automation.condition is None
                else replace(f, holds=f.automation.condition.matches(data))
                for f in found
            ]
        return found

    def next_moment(self, profile: Profile, now: int) -> int | None:
        """The first second after `now` at which a moment trigger is due for this contact."""
        due = [
            moment
            for a, trigger in self.moments
            if a.status == "active"
            for moment in [moment_of(trigger, profile)]
            if moment is not None and moment > now
        ]
        return min(due, default=None)


def moment_of(trigger: MomentTrigger, profile: Profile) -> int | None:
    """The trait's timestamp plus the offset, in epoch seconds; None when the trait is not a
    timestamp."""
    trait = profile.traits.get(trigger.trait)
    value = None if trait is None else comparable(trait.value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) + trigger.offset_s

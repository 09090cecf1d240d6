"""Which automations a contact's change fires, and when time alone will fire one. Pure.

Called by the contacts processor (events applied) and the timer loop (a due timer), inside
the transaction that settles the contact, so a trigger is recorded exactly once with the
change that caused it. An occurrence names what fired (the event id, the segment change,
the trait's value for a moment): the same occurrence never makes a second run."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

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


def fired(automations: Sequence[Automation], change: Change, now: int) -> list[Fired]:
    """The triggers `change` fires at `now` (epoch seconds) among the live `automations`."""
    at = datetime.fromtimestamp(now, UTC)
    entered, left = set(change.entered), set(change.left)
    contact = change.profile.contact_id
    found = []
    for automation in automations:
        if not automation.live_at(at):
            continue
        trigger = automation.definition.trigger
        match trigger:
            case EventTrigger(event_type=wanted):
                found += [
                    Fired(automation, contact, f"event:{e.id}", e.id)
                    for e in change.events
                    if e.type == wanted
                ]
            case SegmentTrigger(kind=kind, segment_id=segment):
                if segment in (entered if kind == "entered_segment" else left):
                    occurrence = f"{kind}:{change.cause}"
                    found.append(Fired(automation, contact, occurrence, change.cause))
            case MomentTrigger():
                moment = moment_of(trigger, change.profile)
                if moment is not None and moment <= now <= moment + trigger.catch_up_s:
                    cause = f"moment:{trigger.trait}:{moment}"
                    found.append(Fired(automation, contact, cause, cause))
    if any(f.automation.condition is not None for f in found):
        data = evaluation_data(change.profile, now)
        found = [
            f
            if f.automation.condition is None
            else replace(f, holds=f.automation.condition.matches(data))
            for f in found
        ]
    return found


def _holds(automation: Automation, data: dict[str, Any]) -> bool:
    return automation.condition is None or automation.condition.matches(data)


def next_moment(automations: Sequence[Automation], profile: Profile, now: int) -> int | None:
    """The first second after `now` at which a moment trigger is due for this contact."""
    due = [
        moment
        for a in automations
        if a.status == "active" and isinstance(a.definition.trigger, MomentTrigger)
        for moment in [moment_of(a.definition.trigger, profile)]
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

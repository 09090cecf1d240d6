"""What else happens when contacts settle, in the same transaction: the automations
(services.coupons.automations) react to events applied and segments entered or left, and
may ask to look at a contact again at a later second. Injected by the composition root, so
the contacts side does not depend on what reacts to it."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from contracts.contacts import ContactEvent
from projections.db import Connection
from services.coupons.contacts.profile import Profile


@dataclass(frozen=True)
class Change:
    """One contact, settled at a second: its profile now, the events just applied to it
    (none for a timer), the segments it entered and left, and what caused the step."""

    profile: Profile
    events: Sequence[ContactEvent]
    entered: tuple[str, ...]
    left: tuple[str, ...]
    cause: str


Reaction = Callable[[Connection, Sequence[Change], int], Awaitable[Mapping[str, int]]]
"""Reacts to settled contacts at an epoch second; returns, per contact, the next second it
wants the contact settled again (merged into the contact's one durable timer)."""

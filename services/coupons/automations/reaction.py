"""The automations' reaction to settled contacts (a `contacts.reactions.Reaction`): record a
run for each trigger fired, keep the events that count as conversions, and ask for the
contact's timer at its next moment trigger. Runs inside the contacts' transaction."""

from collections.abc import Mapping, Sequence

from projections.db import Connection
from services.coupons.automations import store
from services.coupons.automations.triggers import Triggers
from services.coupons.contacts.reactions import Change


async def react(conn: Connection, changes: Sequence[Change], now: int) -> Mapping[str, int]:
    automations, conversion_types = await store.active(conn)
    events = [e for c in changes for e in c.events]
    if events:
        await store.record_conversions(conn, events, conversion_types)
    if not automations:
        return {}
    indexed = Triggers.of(automations)
    fired = [f for c in changes for f in indexed.fired(c, now)]
    await store.record_fired(conn, fired, now)
    wanted = {}
    for change in changes:
        due = indexed.next_moment(change.profile, now)
        if due is not None:
            wanted[change.profile.contact_id] = due
    return wanted

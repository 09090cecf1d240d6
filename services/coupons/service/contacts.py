"""Contacts: append lifecycle events, read a profile with its current segments, and the
automation runs that explain what the contact got."""

from datetime import UTC, datetime
from typing import Any

from contracts.contacts import ContactEvent
from services.coupons.automations import store as automation_store
from services.coupons.contacts import store
from services.coupons.contacts.conditions import DAY
from services.coupons.runtime import Runtime
from services.coupons.service.refusals import Refused


async def ingest(runtime: Runtime, events: tuple[ContactEvent, ...]) -> dict[str, int]:
    """Append the events to the inbound contact-events topic; returns once Kafka holds them
    (acks=all)."""
    await runtime.contact_ingest.append(events)
    return {"accepted": len(events)}


async def profile(runtime: Runtime, contact_id: str) -> dict[str, Any]:
    """The contact's profile (traits with when each was set, event facts, coupon facts) and
    the segments it belongs to now; refused (`contact_not_found`) before any event about it
    has been applied."""
    async with runtime.pool.acquire() as conn:
        text = await conn.fetchval(
            "SELECT profile::text FROM contact_profiles WHERE contact_id = $1", contact_id
        )
        segments = await conn.fetch(
            """SELECT segment_id, version, since FROM segment_members WHERE contact_id = $1
               ORDER BY segment_id""",
            contact_id,
        )
    if text is None:
        raise Refused("contact_not_found", f"no profile for contact {contact_id}")
    found = store.from_json(contact_id, text)
    return {
        "contact_id": contact_id,
        "email": found.email,
        "first_seen": found.first_seen,
        "last_seen": found.last_seen,
        "traits": {
            n: {"value": t.value, "set_at": t.set_at, "set_by": t.set_by}
            for n, t in found.traits.items()
        },
        "events": [
            {
                "event": f.label,
                "count": f.count,
                "last_at": f.last_at,
                "days": [{"day": day_text(d), "count": c} for d, c in f.days],
            }
            for f in found.facts.values()
        ],
        "coupons": found.coupons.__dict__ | {"campaigns": list(found.coupons.campaigns)},
        "segments": [
            {"segment_id": r["segment_id"], "version": r["version"], "since": r["since"]}
            for r in segments
        ],
    }


async def automation_runs(runtime: Runtime, contact_id: str) -> list[dict[str, Any]]:
    """Each automation or broadcast run for the contact, newest first (the latest 200)."""
    async with runtime.pool.acquire() as conn:
        return await automation_store.history(conn, contact_id)


def day_text(day: int) -> str:
    """A day number (epoch seconds // 86400) as its UTC date, `2026-12-05`."""
    return datetime.fromtimestamp(day * DAY, UTC).date().isoformat()

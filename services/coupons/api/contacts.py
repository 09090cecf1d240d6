"""Contacts over HTTP: `POST /v1/contact-events` (scope `ingest`, or admin) appends lifecycle
events to `growthos.contact-events.v1` and answers 202 once Kafka holds them (acks=all);
`GET /v1/contacts/{id}` (analyst) reads a profile and its current segments."""

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from contracts.contacts import ContactEventBatch
from services.coupons.api.auth import require
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.api.params import ContactPath
from services.coupons.automations import store as automation_store
from services.coupons.contacts import store
from services.coupons.contacts.conditions import DAY

router = APIRouter(tags=["contacts"])
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 413, 422)
}


@router.post(
    "/v1/contact-events",
    status_code=202,
    responses=ERRORS,
    dependencies=[Depends(require("ingest"))],
)
async def post_contact_events(body: ContactEventBatch, request: Request) -> dict[str, int]:
    """Append up to 1,000 events; a batch with an invalid event is refused whole (422, the
    field names the event's index: `events.3.occurred_at`) and nothing of it is appended."""
    await runtime_of(request).contact_ingest.append(body.events)
    return {"accepted": len(body.events)}


@router.get(
    "/v1/contacts/{contact_id}",
    responses=ERRORS,
    dependencies=[Depends(require("analyst"))],
)
async def get_profile(contact_id: ContactPath, request: Request) -> dict[str, Any]:
    """The contact's profile (traits with when each was set, event facts, coupon facts) and
    the segments it belongs to now."""
    async with runtime_of(request).pool.acquire() as conn:
        text = await conn.fetchval(
            "SELECT profile::text FROM contact_profiles WHERE contact_id = $1", contact_id
        )
        segments = await conn.fetch(
            """SELECT segment_id, version, since FROM segment_members WHERE contact_id = $1
               ORDER BY segment_id""",
            contact_id,
        )
    if text is None:
        raise ApiError(404, "contact_not_found", f"no profile for contact {contact_id}")
    profile = store.from_json(contact_id, text)
    return {
        "contact_id": contact_id,
        "email": profile.email,
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
        "traits": {
            n: {"value": t.value, "set_at": t.set_at, "set_by": t.set_by}
            for n, t in profile.traits.items()
        },
        "events": [
            {
                "event": f.label,
                "count": f.count,
                "last_at": f.last_at,
                "days": [{"day": day_text(d), "count": c} for d, c in f.days],
            }
            for f in profile.facts.values()
        ],
        "coupons": profile.coupons.__dict__ | {"campaigns": list(profile.coupons.campaigns)},
        "segments": [
            {"segment_id": r["segment_id"], "version": r["version"], "since": r["since"]}
            for r in segments
        ],
    }


@router.get(
    "/v1/contacts/{contact_id}/automation-runs",
    responses=ERRORS,
    dependencies=[Depends(require("analyst"))],
)
async def automation_runs(contact_id: ContactPath, request: Request) -> list[dict[str, Any]]:
    """Why this contact got, or did not get, a coupon: each automation or broadcast run,
    newest first (the latest 200), with the version that fired it, the event or timer that
    did (`cause`), the outcome and the code given."""
    async with runtime_of(request).pool.acquire() as conn:
        return await automation_store.history(conn, contact_id)


def day_text(day: int) -> str:
    """A day number (epoch seconds // 86400) as its UTC date, `2026-12-05`."""
    return datetime.fromtimestamp(day * DAY, UTC).date().isoformat()

"""Contacts over HTTP: `POST /v1/contact-events` (scope `ingest`, or admin) appends lifecycle
events to `growthos.contact-events.v1` and answers 202 once Kafka holds them (acks=all);
`GET /v1/contacts/{id}` (analyst) reads a profile and its current segments. The use cases
are `services/coupons/service/contacts.py`."""

from typing import Any

from fastapi import APIRouter, Depends, Request

from contracts.contacts import ContactEventBatch
from services.coupons.api.auth import require
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ErrorResponse
from services.coupons.api.params import ContactPath
from services.coupons.service import contacts

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
    return await contacts.ingest(runtime_of(request), body.events)


@router.get(
    "/v1/contacts/{contact_id}",
    responses=ERRORS,
    dependencies=[Depends(require("analyst"))],
)
async def get_profile(contact_id: ContactPath, request: Request) -> dict[str, Any]:
    """The contact's profile (traits with when each was set, event facts, coupon facts) and
    the segments it belongs to now."""
    return await contacts.profile(runtime_of(request), contact_id)


@router.get(
    "/v1/contacts/{contact_id}/automation-runs",
    responses=ERRORS,
    dependencies=[Depends(require("analyst"))],
)
async def automation_runs(contact_id: ContactPath, request: Request) -> list[dict[str, Any]]:
    """Why this contact got, or did not get, a coupon: each automation or broadcast run,
    newest first (the latest 200), with the version that fired it, the event or timer that
    did (`cause`), the outcome and the code given."""
    return await contacts.automation_runs(runtime_of(request), contact_id)

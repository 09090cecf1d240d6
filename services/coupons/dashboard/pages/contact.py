"""A contact: its profile (traits, event facts, coupon facts) and current segments (as
`GET /v1/contacts/{id}`), the contact graph (codes received, redemptions, reversals,
refunds), oldest first, from `projections.contacts.coupons` (the read model of
`GET /v1/contacts/{id}/coupons`), and its automation runs."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from projections import contacts
from services.coupons.api.commands import runtime_of
from services.coupons.automations import store as automation_store
from services.coupons.contacts import store as contact_store
from services.coupons.dashboard.session import SignedIn
from services.coupons.dashboard.templating import render

router = APIRouter()

SHOWN = 500


@router.get("/contacts")
async def find_contact(
    request: Request, session: SignedIn, q: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    return render(request, "contact.html", session, contact_id=q.strip(), rows=None)


@router.get("/contacts/{contact_id}")
async def contact_page(
    request: Request, session: SignedIn, contact_id: Annotated[str, Path(max_length=200)]
) -> HTMLResponse:
    async with runtime_of(request).pool.acquire() as conn:
        rows = await contacts.coupons(conn, contact_id, SHOWN + 1)
        runs = await automation_store.history(conn, contact_id)
        text = await conn.fetchval(
            "SELECT profile::text FROM contact_profiles WHERE contact_id = $1", contact_id
        )
        named = await conn.fetch(
            "SELECT id, name FROM campaigns WHERE id = ANY($1::text[])",
            list({r["campaign_id"] for r in rows}),
        )
        segments = await conn.fetch(
            """SELECT m.segment_id, s.name, m.version, m.since FROM segment_members m
               LEFT JOIN segments s ON s.id = m.segment_id
               WHERE m.contact_id = $1 ORDER BY m.segment_id""",
            contact_id,
        )
    return render(
        request,
        "contact.html",
        session,
        contact_id=contact_id,
        rows=rows[:SHOWN],
        more=len(rows) > SHOWN,
        runs=runs,
        profile=None if text is None else contact_store.from_json(contact_id, text),
        segments=segments,
        campaign_names={r["id"]: r["name"] for r in named},
    )

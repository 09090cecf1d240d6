"""Automations: the list with each one's sent, held-out and refused counts, and a page per
automation with its definition, the proof that it converts (treated vs control, lift with
its interval, incremental revenue, return on the discount), refusals by reason, daily
figures, recent runs and the audit trail. The figures are those of
`GET /v1/automations/{id}/stats` (`services.coupons.automations.stats`)."""

import json
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from contracts.automations import AutomationDefinition
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ApiError
from services.coupons.automations import stats
from services.coupons.dashboard.session import SignedIn
from services.coupons.dashboard.templating import render

router = APIRouter()

RECENT_RUNS = 50


@router.get("/automations")
async def automations_page(request: Request, session: SignedIn) -> HTMLResponse:
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT a.id, a.status, a.version, a.definition->>'name' AS name,
                      a.definition->>'campaign_id' AS campaign_id, c.name AS campaign,
                      a.definition->'trigger' AS trigger,
                      count(r.id) AS triggered,
                      count(r.id) FILTER (WHERE r.status = 'sent') AS sent,
                      count(r.id) FILTER (WHERE r.status = 'held_out') AS held_out,
                      count(r.id) FILTER (WHERE r.status = 'refused') AS refused
               FROM automations a LEFT JOIN automation_runs r ON r.source_id = a.id
               LEFT JOIN campaigns c ON c.id = a.definition->>'campaign_id'
               GROUP BY a.id, c.name ORDER BY a.status = 'archived', a.created_at DESC, a.id"""
        )
    listed = [dict(r) | {"trigger": json.loads(r["trigger"])} for r in rows]
    return render(request, "automations.html", session, automations=listed)


@router.get("/automations/{automation_id}")
async def automation_page(
    request: Request, session: SignedIn, automation_id: Annotated[str, Path(max_length=64)]
) -> HTMLResponse:
    async with runtime_of(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT id, status, version, definition::text FROM automations WHERE id = $1",
            automation_id,
        )
        if row is None:
            raise ApiError(404, "automation_not_found", f"no automation {automation_id}")
        definition = AutomationDefinition.model_validate_json(row["definition"])
        campaign = await conn.fetchval(
            "SELECT name FROM campaigns WHERE id = $1", definition.campaign_id
        )
        figures = await stats.figures(
            conn, automation_id, definition.campaign_id, definition.conversion
        )
        runs = await conn.fetch(
            """SELECT r.contact_id, r.cause, r.triggered_at, r.status, r.reason, r.detail,
                      r.source_version, d.code
               FROM automation_runs r LEFT JOIN distributions d ON d.distribution_id = r.id
               WHERE r.source_id = $1 ORDER BY r.triggered_at DESC, r.id LIMIT $2""",
            automation_id,
            RECENT_RUNS,
        )
        versions = await conn.fetch(
            """SELECT version, status, actor, changed_at FROM automation_versions
               WHERE automation_id = $1 ORDER BY version DESC""",
            automation_id,
        )
    return render(
        request,
        "automation.html",
        session,
        automation=dict(row),
        definition=definition,
        campaign=campaign or definition.campaign_id,
        figures=figures,
        runs=runs,
        versions=versions,
    )

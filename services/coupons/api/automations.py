"""Automations over HTTP: define (admin), list, read, change (versioned, audited), move
through draft / active / paused / archived, dry-run for a contact, runs, retry the runs
refused for want of codes, and the figures with lift. See docs/automations.md."""

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import uuid4

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from contracts.automations import (
    AutomationChange,
    AutomationDefinition,
    AutomationRequest,
    SegmentTrigger,
    StatusChange,
)
from contracts.bounds import Id128
from projections import campaigns
from services.coupons.api.auth import require
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.automations import stats, store
from services.coupons.automations.seen import Seen
from services.coupons.automations.sources import sources_for
from services.coupons.automations.verdict import Cap
from services.coupons.service.segments import compiled_condition

router = APIRouter(prefix="/v1/automations", tags=["automations"])
ADMIN = [Depends(require("admin"))]
ANALYST = [Depends(require("analyst"))]
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 422)
}
AutomationPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TRANSITIONS = {
    "draft": {"active", "archived"},
    "active": {"paused", "archived"},
    "paused": {"active", "archived"},
    "archived": set(),
}


class DryRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_id: Id128


async def check_targets(request: Request, definition: AutomationDefinition) -> None:
    """The condition compiles, the campaign and a trigger's segment exist."""
    if definition.condition is not None:
        compiled_condition(definition.condition)
    async with runtime_of(request).pool.acquire() as conn:
        if await campaigns.get(conn, definition.campaign_id) is None:
            raise ApiError(
                422,
                "campaign_not_found",
                f"no campaign {definition.campaign_id}",
                field="campaign_id",
            )
        trigger = definition.trigger
        if isinstance(trigger, SegmentTrigger) and not await conn.fetchval(
            "SELECT 1 FROM segments WHERE id = $1", trigger.segment_id
        ):
            raise ApiError(
                422,
                "segment_not_found",
                f"no segment {trigger.segment_id}",
                field="trigger.segment_id",
            )


@router.post("", status_code=201, responses=ERRORS, dependencies=ADMIN)
async def define_automation(body: AutomationRequest, request: Request) -> dict[str, Any]:
    """Define an automation, as a draft (the default) or active at once."""
    definition = AutomationDefinition.model_validate(body.model_dump(exclude={"id", "status"}))
    await check_targets(request, definition)
    automation_id = body.id or f"auto_{uuid4().hex[:16]}"
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(
            """INSERT INTO automations (id, definition, status) VALUES ($1, $2::jsonb, $3)
               ON CONFLICT DO NOTHING RETURNING id""",
            automation_id,
            store.definition_json(definition),
            body.status,
        )
        if created is None:
            raise ApiError(
                409, "automation_exists", f"automation {automation_id} exists", field="id"
            )
        await _record_version(conn, automation_id, request)
    return await _read(request, automation_id)


@router.get("", responses=ERRORS, dependencies=ANALYST)
async def list_automations(
    request: Request,
    status: Literal["draft", "active", "paused", "archived"] | None = None,
) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT id FROM automations WHERE $1::text IS NULL OR status = $1
               ORDER BY created_at, id""",
            status,
        )
    return [await _read(request, r["id"]) for r in rows]


@router.get("/{automation_id}", responses=ERRORS, dependencies=ANALYST)
async def get_automation(automation_id: AutomationPath, request: Request) -> dict[str, Any]:
    return await _read(request, automation_id)


@router.patch("/{automation_id}", responses=ERRORS, dependencies=ADMIN)
async def change_automation(
    automation_id: AutomationPath, body: AutomationChange, request: Request
) -> dict[str, Any]:
    """Replace the parts given; a new version, in the audit trail. Runs already recorded
    keep the version that fired them; a run due later is judged by the current version."""
    current = await _read(request, automation_id)
    if current["status"] == "archived":
        raise ApiError(409, "automation_archived", f"automation {automation_id} is archived")
    merged = _definition(current).model_dump(mode="json") | body.model_dump(
        mode="json", exclude_unset=True
    )
    try:
        definition = AutomationDefinition.model_validate(merged)
    except ValidationError as error:
        raise ApiError(422, "invalid_request", str(error.errors()[0]["msg"])) from error
    await check_targets(request, definition)
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE automations SET definition = $2::jsonb, version = version + 1,
                   updated_at = now() WHERE id = $1""",
            automation_id,
            store.definition_json(definition),
        )
        await _record_version(conn, automation_id, request)
    return await _read(request, automation_id)


@router.post("/{automation_id}/status", responses=ERRORS, dependencies=ADMIN)
async def change_status(
    automation_id: AutomationPath, body: StatusChange, request: Request
) -> dict[str, Any]:
    """draft → active → paused ⇄ active; any → archived (final). A paused or archived
    automation fires nothing, and its runs not yet sent are refused `automation_inactive`."""
    current = await _read(request, automation_id)
    if body.status != current["status"]:
        if body.status not in TRANSITIONS[current["status"]]:
            message = f"an automation cannot go from {current['status']} to {body.status}"
            raise ApiError(409, "invalid_status_transition", message, field="status")
        async with runtime_of(request).pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE automations SET status = $2, version = version + 1,
                       updated_at = now() WHERE id = $1""",
                automation_id,
                body.status,
            )
            await _record_version(conn, automation_id, request)
    return await _read(request, automation_id)


@router.get("/{automation_id}/versions", responses=ERRORS, dependencies=ANALYST)
async def versions(automation_id: AutomationPath, request: Request) -> list[dict[str, Any]]:
    """The audit trail: every version, who made it and when."""
    await _read(request, automation_id)
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT version, definition::text, status, actor, changed_at
               FROM automation_versions WHERE automation_id = $1 ORDER BY version""",
            automation_id,
        )
    return [dict(r) | {"definition": json.loads(r["definition"])} for r in rows]


@router.post("/{automation_id}/dry-run", responses=ERRORS, dependencies=ANALYST)
async def dry_run(automation_id: AutomationPath, body: DryRun, request: Request) -> dict[str, Any]:
    """Would it send to this contact now, were it triggered? If not, which part says no:
    every check in order, with what it found (the trigger itself is not checked)."""
    found = await _read(request, automation_id)
    runtime = runtime_of(request)
    settings = runtime.settings
    cap = Cap(settings.automation_contact_cap or None, settings.automation_cap_days * 86_400)
    now = datetime.now(UTC)
    run = {"source_id": automation_id, "contact_id": body.contact_id}
    async with runtime.pool.acquire() as conn:
        source = (await sources_for(conn, [run], now)).source(run)
        seen = await Seen.load(conn, [body.contact_id], now, cap)
    campaign = runtime.view.campaign(_definition(found).campaign_id)
    verdict = seen.judge(source, campaign, body.contact_id)
    return {
        "would_send": verdict.reason is None,
        "reason": verdict.reason,
        "checks": [
            {"part": c.part, "passed": c.passed, "detail": c.detail} for c in verdict.checks
        ],
        "known_contact": body.contact_id in seen.profiles,
        "at": now,
    }


@router.get("/{automation_id}/runs", responses=ERRORS, dependencies=ANALYST)
async def runs(
    automation_id: AutomationPath,
    request: Request,
    status: Literal["scheduled", "sending", "sent", "held_out", "refused"] | None = None,
    after: Annotated[str, Query(max_length=64, pattern=r"^[0-9a-f-]*$")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Its runs in id order, a page at a time (`after` the last id of the previous page)."""
    await _read(request, automation_id)
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT id, source_version, contact_id, occurrence, cause, triggered_at, due_at,
                      status, reason, detail, decided_at
               FROM automation_runs WHERE source_id = $1 AND id > $2
                 AND ($3::text IS NULL OR status = $3)
               ORDER BY id LIMIT $4""",
            automation_id,
            after,
            status,
            limit,
        )
    page = [dict(r) for r in rows]
    return {"runs": page, "next": page[-1]["id"] if len(page) == limit else None}


@router.post("/{automation_id}/retry", responses=ERRORS, dependencies=ADMIN)
async def retry(automation_id: AutomationPath, request: Request) -> dict[str, int]:
    """Send again the runs refused `no_codes_left` (once new codes are in): each is judged
    afresh, so a contact served meanwhile is not sent a second coupon."""
    await _read(request, automation_id)
    return {"rescheduled": await _reschedule_no_codes(request, automation_id)}


@router.get("/{automation_id}/stats", responses=ERRORS, dependencies=ANALYST)
async def automation_stats(automation_id: AutomationPath, request: Request) -> dict[str, Any]:
    """Triggered, sent, held out, refused by reason, redeemed; conversion of the treated and
    control groups with 95% intervals, lift, incremental conversions and revenue, discount
    cost, return on the discount; by day. Formulas: docs/analytics.md."""
    found = await _read(request, automation_id)
    definition = _definition(found)
    async with runtime_of(request).pool.acquire() as conn:
        return await stats.figures(
            conn, automation_id, definition.campaign_id, definition.conversion
        )


async def _reschedule_no_codes(request: Request, source_id: str) -> int:
    async with runtime_of(request).pool.acquire() as conn:
        done = await conn.execute(
            """UPDATE automation_runs SET status = 'scheduled', reason = NULL, detail = NULL,
                   due_at = now(), decided_at = NULL
               WHERE source_id = $1 AND status = 'refused' AND reason = 'no_codes_left'""",
            source_id,
        )
        await conn.execute("SELECT pg_notify($1, '')", store.RUNS_CHANNEL)
    return int(done.split()[-1])


async def _record_version(conn: Any, automation_id: str, request: Request) -> None:
    await conn.execute(
        """INSERT INTO automation_versions (automation_id, version, definition, status, actor)
           SELECT id, version, definition, status, $2 FROM automations WHERE id = $1""",
        automation_id,
        getattr(request.state, "actor", None),
    )


async def _read(request: Request, automation_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT id, definition::text, status, version, created_at, updated_at
               FROM automations WHERE id = $1""",
            automation_id,
        )
    if row is None:
        raise ApiError(404, "automation_not_found", f"no automation {automation_id}")
    found = dict(row)
    return {"id": found["id"], **json.loads(found.pop("definition"))} | found


def _definition(found: dict[str, Any]) -> AutomationDefinition:
    return AutomationDefinition.model_validate(
        {k: v for k, v in found.items() if k in AutomationDefinition.model_fields}
    )

"""Broadcasts over HTTP: send a campaign's code to every member of a segment (admin), read
its progress, cancel it before it starts, and its figures. See docs/automations.md."""

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from contracts.automations import BroadcastRequest
from projections import campaigns
from services.coupons.api.auth import require
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.api.params import IdempotencyKey
from services.coupons.automations import stats, store

router = APIRouter(prefix="/v1/broadcasts", tags=["automations"])
ADMIN = [Depends(require("admin"))]
ANALYST = [Depends(require("analyst"))]
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 422)
}
BroadcastPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.post("", status_code=202, responses=ERRORS, dependencies=ADMIN)
async def broadcast(
    body: BroadcastRequest, request: Request, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """Schedule a broadcast (now when `send_at` is absent). The same `Idempotency-Key`
    answers the first broadcast again instead of making a second."""
    broadcast_id = f"bc_{idempotency_key}" if idempotency_key else None
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        if await campaigns.get(conn, body.campaign_id) is None:
            raise ApiError(
                422, "campaign_not_found", f"no campaign {body.campaign_id}", field="campaign_id"
            )
        if not await conn.fetchval("SELECT 1 FROM segments WHERE id = $1", body.segment_id):
            raise ApiError(
                422, "segment_not_found", f"no segment {body.segment_id}", field="segment_id"
            )
        broadcast_id = await conn.fetchval(
            """INSERT INTO broadcasts (id, definition, send_at, actor)
               VALUES (coalesce($1, 'bc_' || md5(random()::text)), $2::jsonb, $3, $4)
               ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING id""",
            broadcast_id and broadcast_id[:64],
            store.definition_json(body),
            body.send_at or datetime.now(UTC),
            getattr(request.state, "actor", None),
        )
    return await _read(request, broadcast_id)


@router.get("", responses=ERRORS, dependencies=ANALYST)
async def list_broadcasts(request: Request) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch("SELECT id FROM broadcasts ORDER BY created_at DESC, id")
    return [await _read(request, r["id"]) for r in rows]


@router.get("/{broadcast_id}", responses=ERRORS, dependencies=ANALYST)
async def get_broadcast(broadcast_id: BroadcastPath, request: Request) -> dict[str, Any]:
    """The broadcast with its progress: contacts snapshotted, and runs by status."""
    return await _read(request, broadcast_id)


@router.post("/{broadcast_id}/cancel", responses=ERRORS, dependencies=ADMIN)
async def cancel(broadcast_id: BroadcastPath, request: Request) -> dict[str, Any]:
    """Cancel a broadcast that has not started (`409 broadcast_started` once it has)."""
    found = await _read(request, broadcast_id)
    if found["status"] != "cancelled":
        async with runtime_of(request).pool.acquire() as conn:
            cancelled = await conn.fetchval(
                """UPDATE broadcasts SET status = 'cancelled', finished_at = now()
                   WHERE id = $1 AND status = 'scheduled' RETURNING id""",
                broadcast_id,
            )
        if cancelled is None:
            raise ApiError(409, "broadcast_started", f"broadcast {broadcast_id} has started")
    return await _read(request, broadcast_id)


@router.get("/{broadcast_id}/stats", responses=ERRORS, dependencies=ANALYST)
async def broadcast_stats(broadcast_id: BroadcastPath, request: Request) -> dict[str, Any]:
    """The same figures as an automation's (docs/analytics.md)."""
    found = await _read(request, broadcast_id)
    definition = BroadcastRequest.model_validate(
        {k: v for k, v in found.items() if k in BroadcastRequest.model_fields}
    )
    async with runtime_of(request).pool.acquire() as conn:
        return await stats.figures(
            conn, broadcast_id, definition.campaign_id, definition.conversion
        )


async def _read(request: Request, broadcast_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT id, definition::text, status, send_at, total, created_at, started_at,
                      finished_at FROM broadcasts WHERE id = $1""",
            broadcast_id,
        )
        if row is None:
            raise ApiError(404, "broadcast_not_found", f"no broadcast {broadcast_id}")
        progress = await conn.fetch(
            """SELECT status, count(*) AS n FROM automation_runs WHERE source_id = $1
               GROUP BY status""",
            broadcast_id,
        )
    found = dict(row)
    found = {"id": found["id"], **json.loads(found.pop("definition"))} | found
    by_status = {r["status"]: r["n"] for r in progress}
    left = by_status.get("scheduled", 0) + by_status.get("sending", 0)
    found["progress"] = {"by_status": by_status, "done": (found["total"] or 0) - left}
    return found

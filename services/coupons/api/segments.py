"""Segments over HTTP: define (admin), list, read with size and backfill progress, members
(paged or CSV), change (versioned, audited), archive, and preview a condition.
See docs/segments.md."""

import csv
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from uuid import uuid4

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from contracts.bounds import Label
from services.coupons.api.auth import require
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.contacts import backfill
from services.coupons.contacts import preview as contact_preview
from services.coupons.contacts.conditions import Condition, InvalidCondition, compile_condition

router = APIRouter(prefix="/v1/segments", tags=["segments"])
ADMIN = [Depends(require("admin"))]
ANALYST = [Depends(require("analyst"))]
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 413, 422)
}
SegmentId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
SegmentPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class SegmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: SegmentId | None = None
    name: Label
    kind: Literal["live", "static"] = "live"
    condition: JsonValue = None
    """Required for a live segment; none for a static one (its list is uploaded)."""


class SegmentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Label | None = None
    condition: JsonValue | None = None
    status: Literal["active", "archived"] | None = None


class Preview(BaseModel):
    model_config = ConfigDict(extra="forbid")
    condition: JsonValue


def compiled_condition(tree: object) -> Condition:
    try:
        return compile_condition(tree)
    except InvalidCondition as error:
        raise ApiError(
            422,
            "invalid_condition",
            f"condition{error.path}: {error.message}",
            field=f"condition{error.path}",
        ) from error


@router.post("", status_code=201, responses=ERRORS, dependencies=ADMIN)
async def define_segment(body: SegmentRequest, request: Request) -> dict[str, Any]:
    """Define a live segment (its backfill over existing profiles starts at once), or a static
    one, whose members are uploaded (`POST /v1/segments/{id}/members`)."""
    if body.kind == "live":
        compiled_condition(body.condition)
    elif body.condition is not None:
        raise ApiError(
            422, "invalid_request", "a static segment has no condition", field="condition"
        )
    segment_id = body.id or f"seg_{uuid4().hex[:16]}"
    actor = getattr(request.state, "actor", None)
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(
            """INSERT INTO segments (id, name, kind, condition) VALUES ($1, $2, $3, $4::jsonb)
               ON CONFLICT DO NOTHING RETURNING id""",
            segment_id,
            body.name,
            body.kind,
            None if body.kind == "static" else json.dumps(body.condition),
        )
        if created is None:
            raise ApiError(409, "segment_exists", f"segment {segment_id} exists", field="id")
        await _record_version(conn, segment_id, actor)
        if body.kind == "live":
            await backfill.start(conn, segment_id, 1)
    return await _read(request, segment_id)


@router.get("", responses=ERRORS, dependencies=ANALYST)
async def list_segments(request: Request) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        ids = await conn.fetch("SELECT id FROM segments ORDER BY created_at, id")
    return [await _read(request, r["id"]) for r in ids]


@router.post("/preview", responses=ERRORS, dependencies=ANALYST)
async def preview(body: Preview, request: Request) -> dict[str, Any]:
    """How many contacts match now, and a sample of 20, without defining anything."""
    condition = compiled_condition(body.condition)
    async with runtime_of(request).pool.acquire() as conn:
        found = await contact_preview.preview(conn, condition, int(time.time()))
    return {"matched": found.matched, "sample": found.sample, "at": found.at}


@router.get("/{segment_id}", responses=ERRORS, dependencies=ANALYST)
async def get_segment(segment_id: SegmentPath, request: Request) -> dict[str, Any]:
    return await _read(request, segment_id)


@router.patch("/{segment_id}", responses=ERRORS, dependencies=ADMIN)
async def change_segment(
    segment_id: SegmentPath, body: SegmentChange, request: Request
) -> dict[str, Any]:
    """Change the name, condition or status; a new condition is a new version, backfilled."""
    if body.condition is not None:
        compiled_condition(body.condition)
    actor = getattr(request.state, "actor", None)
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        version = await conn.fetchval(
            """UPDATE segments SET name = coalesce($2, name),
                   condition = coalesce($3::jsonb, condition), status = coalesce($4, status),
                   version = version + 1, updated_at = now()
               WHERE id = $1 RETURNING version""",
            segment_id,
            body.name,
            None if body.condition is None else json.dumps(body.condition),
            body.status,
        )
        if version is None:
            raise ApiError(404, "segment_not_found", f"no segment {segment_id}")
        await _record_version(conn, segment_id, actor)
        await backfill.start(conn, segment_id, version)
    return await _read(request, segment_id)


@router.get("/{segment_id}/versions", responses=ERRORS, dependencies=ANALYST)
async def segment_versions(segment_id: SegmentPath, request: Request) -> list[dict[str, Any]]:
    """The audit trail: every version, who made it and when."""
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT version, condition::text, status, actor, changed_at FROM segment_versions
               WHERE segment_id = $1 ORDER BY version""",
            segment_id,
        )
    return [dict(r) | {"condition": json.loads(r["condition"] or "null")} for r in rows]


@router.get("/{segment_id}/members", responses=ERRORS, dependencies=ANALYST, response_model=None)
async def members(
    segment_id: SegmentPath,
    request: Request,
    after: Annotated[str, Query(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Literal["json", "csv"] = "json",
) -> dict[str, Any] | StreamingResponse:
    """Members in contact-id order: a page (`after` the last id of the previous page), or
    every member as CSV (`format=csv`, streamed)."""
    await _read(request, segment_id)
    pool = runtime_of(request).pool
    if format == "csv":
        return StreamingResponse(_csv(pool, segment_id), media_type="text/csv")
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT contact_id, version, since FROM segment_members
               WHERE segment_id = $1 AND contact_id > $2 ORDER BY contact_id LIMIT $3""",
            segment_id,
            after,
            limit,
        )
    page = [dict(r) for r in rows]
    return {"members": page, "next": page[-1]["contact_id"] if len(page) == limit else None}


async def _csv(pool: Any, segment_id: str) -> AsyncIterator[str]:
    yield "contact_id,since\n"
    after = ""
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT contact_id, since FROM segment_members
                   WHERE segment_id = $1 AND contact_id > $2 ORDER BY contact_id LIMIT 5000""",
                segment_id,
                after,
            )
        if not rows:
            return
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows((r["contact_id"], r["since"].isoformat()) for r in rows)
        yield out.getvalue()
        after = rows[-1]["contact_id"]


async def _record_version(conn: Any, segment_id: str, actor: str | None) -> None:
    await conn.execute(
        """INSERT INTO segment_versions (segment_id, version, condition, status, actor)
           SELECT id, version, condition, status, $2 FROM segments WHERE id = $1""",
        segment_id,
        actor,
    )


async def _read(request: Request, segment_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT s.id, s.name, s.kind, s.condition::text, s.version, s.status,
                      s.created_at, s.updated_at,
                      (SELECT count(*) FROM segment_members m WHERE m.segment_id = s.id) AS size,
                      b.done, b.total, b.finished
               FROM segments s LEFT JOIN segment_backfills b
                 ON b.segment_id = s.id AND b.version = s.version
               WHERE s.id = $1""",
            segment_id,
        )
    if row is None:
        raise ApiError(404, "segment_not_found", f"no segment {segment_id}")
    found = dict(row)
    backfill_state = {k: found.pop(k) for k in ("done", "total", "finished")}
    found["condition"] = json.loads(found["condition"] or "null")
    found["backfill"] = backfill_state if backfill_state["total"] is not None else None
    return found

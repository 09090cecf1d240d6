"""Segments: define (live or static), change (versioned, audited, backfilled), read with size
and backfill progress, list, members (a page or every one as CSV), and preview a condition.
See docs/segments.md."""

import csv
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

from projections.db import Connection
from services.coupons.contacts import backfill, segment_sizes
from services.coupons.contacts import preview as contact_preview
from services.coupons.contacts.conditions import Condition, InvalidCondition, compile_condition
from services.coupons.runtime import Runtime
from services.coupons.service.calls import Call
from services.coupons.service.refusals import Refused
from services.coupons.service.segment_models import Preview, SegmentChange, SegmentRequest

CSV_PAGE = 5000


def compiled_condition(tree: object) -> Condition:
    """The condition, compiled; refused (`invalid_condition`) with the path of the fault."""
    try:
        return compile_condition(tree)
    except InvalidCondition as error:
        where = f"condition{error.path}"
        raise Refused("invalid_condition", f"{where}: {error.message}", field=where) from error


async def define(call: Call, body: SegmentRequest) -> dict[str, Any]:
    """Define a live segment (its backfill over existing profiles starts at once), or a static
    one, whose members are uploaded (`static_segments.upload`)."""
    if body.kind == "live":
        compiled_condition(body.condition)
    elif body.condition is not None:
        message = "a static segment has no condition"
        raise Refused("invalid_request", message, field="condition")
    segment_id = body.id or f"seg_{uuid4().hex[:16]}"
    async with call.runtime.pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(
            """INSERT INTO segments (id, name, kind, condition) VALUES ($1, $2, $3, $4::jsonb)
               ON CONFLICT DO NOTHING RETURNING id""",
            segment_id,
            body.name,
            body.kind,
            None if body.kind == "static" else json.dumps(body.condition),
        )
        if created is None:
            raise Refused("segment_exists", f"segment {segment_id} exists", field="id")
        await _record_version(conn, segment_id, call.actor)
        if body.kind == "live":
            await backfill.start(conn, segment_id, 1)
    return await segment(call.runtime, segment_id)


async def change(call: Call, segment_id: str, body: SegmentChange) -> dict[str, Any]:
    """Change the name, condition or status; a new condition is a new version, backfilled."""
    if body.condition is not None:
        compiled_condition(body.condition)
    async with call.runtime.pool.acquire() as conn, conn.transaction():
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
            raise Refused("segment_not_found", f"no segment {segment_id}")
        await _record_version(conn, segment_id, call.actor)
        await backfill.start(conn, segment_id, version)
    return await segment(call.runtime, segment_id)


async def segments(runtime: Runtime) -> list[dict[str, Any]]:
    """Every segment, oldest first."""
    async with runtime.pool.acquire() as conn:
        ids = await conn.fetch("SELECT id FROM segments ORDER BY created_at, id")
    return [await segment(runtime, r["id"]) for r in ids]


async def segment(runtime: Runtime, segment_id: str) -> dict[str, Any]:
    """The segment with its size and its current version's backfill progress."""
    async with runtime.pool.acquire() as conn:
        row = await conn.fetchrow(
            f"""SELECT s.id, s.name, s.kind, s.condition::text, s.version, s.status,
                      s.created_at, s.updated_at,
                      {segment_sizes.SIZE} AS size,
                      b.done, b.total, b.finished
               FROM segments s LEFT JOIN segment_backfills b
                 ON b.segment_id = s.id AND b.version = s.version
               WHERE s.id = $1""",
            segment_id,
        )
    if row is None:
        raise Refused("segment_not_found", f"no segment {segment_id}")
    found = dict(row)
    backfill_state = {k: found.pop(k) for k in ("done", "total", "finished")}
    found["condition"] = json.loads(found["condition"] or "null")
    found["backfill"] = backfill_state if backfill_state["total"] is not None else None
    return found


async def versions(runtime: Runtime, segment_id: str) -> list[dict[str, Any]]:
    """The audit trail: every version, who made it and when."""
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT version, condition::text, status, actor, changed_at FROM segment_versions
               WHERE segment_id = $1 ORDER BY version""",
            segment_id,
        )
    return [dict(r) | {"condition": json.loads(r["condition"] or "null")} for r in rows]


async def members(runtime: Runtime, segment_id: str, after: str, limit: int) -> dict[str, Any]:
    """A page of members in contact-id order; `next` is the `after` of the next page."""
    await segment(runtime, segment_id)
    page = await _page(runtime, segment_id, after, limit)
    return {"members": page, "next": page[-1]["contact_id"] if len(page) == limit else None}


async def members_csv(runtime: Runtime, segment_id: str) -> AsyncIterator[str]:
    """Every member as CSV text, in pages (refused before the first byte if there is no
    such segment)."""
    await segment(runtime, segment_id)
    return _csv(runtime, segment_id)


async def _csv(runtime: Runtime, segment_id: str) -> AsyncIterator[str]:
    yield "contact_id,since\n"
    after = ""
    while True:
        rows = await _page(runtime, segment_id, after, CSV_PAGE)
        if not rows:
            return
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows((r["contact_id"], r["since"].isoformat()) for r in rows)
        yield out.getvalue()
        after = rows[-1]["contact_id"]


async def _page(runtime: Runtime, segment_id: str, after: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` members after the contact id `after`, in contact-id order."""
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT contact_id, version, since FROM segment_members
               WHERE segment_id = $1 AND contact_id > $2 ORDER BY contact_id LIMIT $3""",
            segment_id,
            after,
            limit,
        )
    return [dict(r) for r in rows]


async def preview(runtime: Runtime, body: Preview) -> dict[str, Any]:
    """How many contacts match the condition now, and a sample of 20; defines nothing."""
    condition = compiled_condition(body.condition)
    async with runtime.pool.acquire() as conn:
        found = await contact_preview.preview(conn, condition, int(time.time()))
    return {"matched": found.matched, "sample": found.sample, "at": found.at}


async def _record_version(conn: Connection, segment_id: str, actor: str | None) -> None:
    await conn.execute(
        """INSERT INTO segment_versions (segment_id, version, condition, status, actor)
           SELECT id, version, condition, status, $2 FROM segments WHERE id = $1""",
        segment_id,
        actor,
    )

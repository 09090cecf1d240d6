"""Segments: the list with each one's size, and a page per segment with its condition, its
backfill's progress, its members (paged, linked to their contact, and as CSV) and its versions.
The same rows as `GET /v1/segments`, `GET /v1/segments/{id}/members` and `.../versions`
(`services.coupons.api.segments`); segments are defined and changed through that API."""

import json
from typing import Annotated, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from services.coupons.api import segments as segments_api
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ApiError
from services.coupons.api.params import SegmentPath
from services.coupons.contacts import segment_sizes
from services.coupons.dashboard.session import SignedIn
from services.coupons.dashboard.templating import render

router = APIRouter()

PAGE_SIZE = 50

_SEGMENTS = f"""
SELECT s.id, s.name, s.kind, s.status, s.version, s.condition::text, s.updated_at,
       b.done, b.total, b.finished, {segment_sizes.SIZE} AS size
FROM segments s LEFT JOIN segment_backfills b ON b.segment_id = s.id AND b.version = s.version
"""


@router.get("/segments")
async def segments_page(request: Request, session: SignedIn) -> HTMLResponse:
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch(
            f"{_SEGMENTS} ORDER BY s.status = 'archived', s.created_at DESC, s.id"
        )
    return render(request, "segments.html", session, segments=rows)


@router.get("/segments/{segment_id}")
async def segment_page(
    request: Request,
    session: SignedIn,
    segment_id: SegmentPath,
    after: Annotated[str, Query(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")] = "",
) -> HTMLResponse:
    async with runtime_of(request).pool.acquire() as conn:
        segment = await conn.fetchrow(f"{_SEGMENTS} WHERE s.id = $1", segment_id)
        if segment is None:
            raise ApiError(404, "segment_not_found", f"no segment {segment_id}")
        members = await conn.fetch(
            """SELECT contact_id, version, since FROM segment_members
               WHERE segment_id = $1 AND contact_id > $2 ORDER BY contact_id LIMIT $3""",
            segment_id,
            after,
            PAGE_SIZE + 1,
        )
        versions = await conn.fetch(
            """SELECT version, status, actor, changed_at FROM segment_versions
               WHERE segment_id = $1 ORDER BY version DESC""",
            segment_id,
        )
    condition = json.loads(segment["condition"] or "null")
    return render(
        request,
        "segment.html",
        session,
        segment=segment,
        size=segment["size"],
        condition=None if condition is None else json.dumps(condition, indent=2),
        members=members[:PAGE_SIZE],
        after=after,
        next_after=members[PAGE_SIZE - 1]["contact_id"] if len(members) > PAGE_SIZE else None,
        versions=versions,
    )


@router.get("/segments/{segment_id}/members.csv")
async def members_csv(
    request: Request, session: SignedIn, segment_id: SegmentPath
) -> StreamingResponse:
    """Every member as CSV: the API's own export, with the session instead of a key."""
    exported = await segments_api.members(segment_id, request, format="csv")
    return cast(StreamingResponse, exported)  # format="csv" is always a stream

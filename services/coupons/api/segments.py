"""Segments over HTTP: define (admin), list, read with size and backfill progress, members
(paged or CSV), change (versioned, audited), archive, and preview a condition. The use cases
are `services/coupons/service/segments.py`; these routes parse, call and answer.
See docs/segments.md."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from services.coupons.api.auth import require
from services.coupons.api.commands import call_of, runtime_of
from services.coupons.api.errors import ErrorResponse
from services.coupons.api.params import SegmentPath
from services.coupons.service import segments
from services.coupons.service.segment_models import Preview, SegmentChange, SegmentRequest

router = APIRouter(prefix="/v1/segments", tags=["segments"])
ADMIN = [Depends(require("admin"))]
ANALYST = [Depends(require("analyst"))]
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 413, 422)
}


@router.post("", status_code=201, responses=ERRORS, dependencies=ADMIN)
async def define_segment(body: SegmentRequest, request: Request) -> dict[str, Any]:
    """Define a live segment (its backfill over existing profiles starts at once), or a static
    one, whose members are uploaded (`POST /v1/segments/{id}/members`)."""
    return await segments.define(call_of(request), body)


@router.get("", responses=ERRORS, dependencies=ANALYST)
async def list_segments(request: Request) -> list[dict[str, Any]]:
    return await segments.segments(runtime_of(request))


@router.post("/preview", responses=ERRORS, dependencies=ANALYST)
async def preview(body: Preview, request: Request) -> dict[str, Any]:
    """How many contacts match now, and a sample of 20, without defining anything."""
    return await segments.preview(runtime_of(request), body)


@router.get("/{segment_id}", responses=ERRORS, dependencies=ANALYST)
async def get_segment(segment_id: SegmentPath, request: Request) -> dict[str, Any]:
    return await segments.segment(runtime_of(request), segment_id)


@router.patch("/{segment_id}", responses=ERRORS, dependencies=ADMIN)
async def change_segment(
    segment_id: SegmentPath, body: SegmentChange, request: Request
) -> dict[str, Any]:
    """Change the name, condition or status; a new condition is a new version, backfilled."""
    return await segments.change(call_of(request), segment_id, body)


@router.get("/{segment_id}/versions", responses=ERRORS, dependencies=ANALYST)
async def segment_versions(segment_id: SegmentPath, request: Request) -> list[dict[str, Any]]:
    """The audit trail: every version, who made it and when."""
    return await segments.versions(runtime_of(request), segment_id)


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
    runtime = runtime_of(request)
    if format == "csv":
        rows = await segments.members_csv(runtime, segment_id)
        return StreamingResponse(rows, media_type="text/csv")
    return await segments.members(runtime, segment_id, after, limit)

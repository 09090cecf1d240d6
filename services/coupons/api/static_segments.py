"""`POST /v1/segments/{id}/members`: a chunk of a static segment's list, as CSV. The use
case, and the format of the list, are `services/coupons/service/static_segments.py`."""

from typing import Any

from fastapi import APIRouter, Depends, Request

from services.coupons.api.auth import require
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ErrorResponse
from services.coupons.api.params import SegmentPath
from services.coupons.service import static_segments

router = APIRouter(prefix="/v1/segments", tags=["segments"])
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 413, 422)
}


@router.post("/{segment_id}/members", responses=ERRORS, dependencies=[Depends(require("admin"))])
async def upload_members(segment_id: SegmentPath, request: Request) -> dict[str, int]:
    """Add a chunk of contact ids or emails (CSV) to a static segment."""
    return await static_segments.upload(runtime_of(request), segment_id, await request.body())

"""Unique codes: bulk generation jobs, listing and CSV export."""

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel

from projections import campaigns
from services.coupons.api.auth import require
from services.coupons.api.commands import call_of, runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.api.params import CampaignPath, Cursor, JobPath, KeyOrFresh
from services.coupons.service import jobs
from services.coupons.service.jobs import BatchRequest
from services.coupons.store import code_batches

router = APIRouter(prefix="/v1", tags=["codes"])
ADMIN = [Depends(require("admin"))]
ANALYST = [Depends(require("analyst"))]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)
}


class Batch(BaseModel):
    id: str
    campaign_id: str
    requested: int
    generated: int
    status: Literal["running", "done", "failed"]
    error: str | None
    created_at: AwareDatetime
    finished_at: AwareDatetime | None


class Code(BaseModel):
    code: str
    contact_id: str | None
    distributed_at: AwareDatetime | None
    redemptions: int
    batch_id: str


class CodePage(BaseModel):
    data: list[Code]
    next_cursor: str | None


@router.post(
    "/campaigns/{campaign_id}/code-batches",
    status_code=202,
    response_model=Batch,
    responses=ERRORS,
    dependencies=ADMIN,
)
async def generate_codes(
    campaign_id: CampaignPath,
    body: BatchRequest,
    request: Request,
    response: Response,
    idempotency_key: KeyOrFresh,
) -> dict[str, Any]:
    """Generate `count` unique codes (up to 1,000,000) in the background. Answers `202` with
    the job; poll `GET /v1/code-batches/{id}` for progress. Refused (422) when the pattern is
    guessable (under 60 bits) or its space is too small for the count."""
    batch = await jobs.generate_codes(call_of(request), campaign_id, body, idempotency_key)
    response.headers["Location"] = f"/v1/code-batches/{batch['id']}"
    return batch


@router.get(
    "/code-batches/{batch_id}", response_model=Batch, responses=ERRORS, dependencies=ANALYST
)
async def get_batch(batch_id: JobPath, request: Request) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        batch = await code_batches.get(conn, batch_id)
    if batch is None:
        raise ApiError(404, "batch_not_found", f"no code batch {batch_id}")
    return batch


@router.get(
    "/campaigns/{campaign_id}/codes",
    response_model=CodePage,
    responses=ERRORS,
    dependencies=ANALYST,
)
async def list_codes(
    campaign_id: CampaignPath,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The campaign's unique codes in code order; pass `next_cursor` back as `cursor`."""
    async with runtime_of(request).pool.acquire() as conn:
        rows = await campaigns.codes_page(conn, campaign_id, limit, cursor)
    return {"data": rows, "next_cursor": rows[-1]["code"] if len(rows) == limit else None}


@router.get("/campaigns/{campaign_id}/codes.csv", responses=ERRORS, dependencies=ANALYST)
async def export_codes(campaign_id: CampaignPath, request: Request) -> StreamingResponse:
    """Every unique code as CSV (code, contact_id, distributed_at, redemptions, batch_id),
    streamed in pages, so a million codes never sit in memory at once."""
    pool = runtime_of(request).pool

    async def rows() -> AsyncIterator[str]:
        yield "code,contact_id,distributed_at,redemptions,batch_id\r\n"
        after: str | None = None
        while True:
            async with pool.acquire() as conn:
                page = await campaigns.codes_page(conn, campaign_id, 10_000, after)
            if not page:
                return
            out = io.StringIO()
            writer = csv.writer(out)
            for r in page:
                at = r["distributed_at"].isoformat() if r["distributed_at"] else ""
                writer.writerow(
                    [r["code"], r["contact_id"] or "", at, r["redemptions"], r["batch_id"]]
                )
            yield out.getvalue()
            after = page[-1]["code"]

    headers = {"Content-Disposition": f'attachment; filename="{campaign_id}-codes.csv"'}
    return StreamingResponse(rows(), media_type="text/csv", headers=headers)

"""A campaign's unique codes: the searchable, paged table, its CSV export, and generating
codes with a live progress bar. Generating and exporting go through the API's own handlers
(`service.jobs.generate_codes`, `export_codes`): the same checks, idempotency and CSV."""

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from projections.db import Connection
from services.coupons.api.codes import export_codes
from services.coupons.api.commands import call_of, runtime_of
from services.coupons.api.errors import ApiError
from services.coupons.api.params import CampaignPath, JobPath
from services.coupons.dashboard import progress
from services.coupons.dashboard.redirects import back_to_campaign
from services.coupons.dashboard.session import AdminChecked, SignedIn
from services.coupons.dashboard.templating import render
from services.coupons.domain.codes import normalise
from services.coupons.service import jobs
from services.coupons.service.jobs import BatchRequest
from services.coupons.store import code_batches

router = APIRouter()

PAGE_SIZE = 50
COLUMNS = "code, contact_id, distributed_at, redemptions"
BATCHES_SHOWN = 5


async def codes(
    conn: Connection, campaign_id: str, search: str, after: str, limit: int = PAGE_SIZE
) -> list[dict[str, Any]]:
    """A page (and one more row) of the campaign's codes in code order after `after`: every
    one, or those starting with `search` (as a code is normalised) and those held by the
    contact `search`. Each half is a range of an index (the key, in byte order since
    migration 0041; `codes_by_holder`), so a search reads a page, not the campaign's codes."""
    page = "ORDER BY code LIMIT $3"
    if not search:
        rows = await conn.fetch(
            f"""SELECT {COLUMNS} FROM codes WHERE campaign_id = $1 AND code > $2 {page}""",
            campaign_id,
            after,
            limit + 1,
        )
    else:
        rows = await conn.fetch(
            f"""SELECT {COLUMNS} FROM (
                    (SELECT {COLUMNS} FROM codes
                     WHERE campaign_id = $1 AND code > $2
                       AND code >= $4 AND code < $4 || chr(1114111) {page})
                    UNION
                    (SELECT {COLUMNS} FROM codes
                     WHERE campaign_id = $1 AND code > $2 AND contact_id = $5 {page})
                ) found {page}""",
            campaign_id,
            after,
            limit + 1,
            normalise(search),
            search,
        )
    return [dict(r) for r in rows]


async def batches(conn: Connection, campaign_id: str) -> list[progress.Progress]:
    rows = await conn.fetch(
        f"""SELECT {code_batches.COLUMNS} FROM code_batches WHERE campaign_id = $1
            ORDER BY created_at DESC LIMIT {BATCHES_SHOWN}""",
        campaign_id,
    )
    return [progress.code_batch(dict(r)) for r in rows]


@router.post("/campaigns/{campaign_id}/code-batches")
async def generate(
    request: Request,
    session: AdminChecked,
    campaign_id: CampaignPath,
    count: Annotated[str, Form(max_length=20)],
    prefix: Annotated[str, Form(max_length=100)] = "",
    idempotency_key: Annotated[str, Form(min_length=8, max_length=100)] = "",
) -> RedirectResponse:

    async def generate_batch() -> str:
        sent = int(count) if count.strip().isdigit() else count
        body = BatchRequest.model_validate({"count": sent, "pattern": {"prefix": prefix}})
        batch = await jobs.generate_codes(call_of(request), campaign_id, body, idempotency_key)
        return f"?batch={quote(batch['id'])}"

    return await back_to_campaign(campaign_id, "codes", generate_batch)


@router.get("/code-batches/{batch_id}")
async def batch_progress(request: Request, session: SignedIn, batch_id: JobPath) -> HTMLResponse:
    """The batch's progress bar, polled by the page (htmx) every second until it is done."""
    async with runtime_of(request).pool.acquire() as conn:
        batch = await code_batches.get(conn, batch_id)
    if batch is None:
        raise ApiError(404, "batch_not_found", f"no code batch {batch_id}")
    return render(request, "_progress.html", session, job=progress.code_batch(batch))


@router.get("/campaigns/{campaign_id}/codes.csv")
async def codes_csv(
    request: Request, session: SignedIn, campaign_id: Annotated[str, Path(max_length=64)]
) -> StreamingResponse:
    return await export_codes(campaign_id, request)

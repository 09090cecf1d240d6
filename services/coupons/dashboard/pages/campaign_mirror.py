"""Mirror a campaign to Stripe (a Coupon and a PromotionCode per code), with a live progress
bar: the job is started by the API's own use case (`service.jobs.mirror_to_stripe`, as `POST
/v1/campaigns/{id}/stripe-mirror`)."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from projections.db import Connection
from services.coupons.api.commands import call_of, runtime_of
from services.coupons.api.errors import ApiError
from services.coupons.api.params import CampaignPath, JobPath
from services.coupons.dashboard import progress
from services.coupons.dashboard.redirects import back_to_campaign
from services.coupons.dashboard.session import AdminChecked, SignedIn
from services.coupons.dashboard.templating import render
from services.coupons.service import jobs
from services.coupons.stripe import mirror

router = APIRouter()

SHOWN = 3


async def mirrors(conn: Connection, campaign_id: str) -> list[progress.Progress]:
    rows = await conn.fetch(
        f"""SELECT * FROM stripe_mirror_jobs WHERE campaign_id = $1
            ORDER BY created_at DESC LIMIT {SHOWN}""",
        campaign_id,
    )
    return [progress.stripe_mirror(dict(r)) for r in rows]


@router.post("/campaigns/{campaign_id}/stripe-mirror")
async def start(
    request: Request,
    session: AdminChecked,
    campaign_id: CampaignPath,
    idempotency_key: Annotated[str, Form(min_length=8, max_length=100)],
) -> RedirectResponse:

    async def mirror_campaign() -> str:
        await jobs.mirror_to_stripe(call_of(request), campaign_id, idempotency_key)
        return ""

    return await back_to_campaign(campaign_id, "stripe", mirror_campaign)


@router.get("/stripe-mirrors/{job_id}")
async def mirror_progress(request: Request, session: SignedIn, job_id: JobPath) -> HTMLResponse:
    """The job's progress bar, polled by the page (htmx) every second until it is done."""
    async with runtime_of(request).pool.acquire() as conn:
        job = await mirror.get_job(conn, job_id)
    if job is None:
        raise ApiError(404, "mirror_not_found", f"no mirroring job {job_id}")
    return render(request, "_progress.html", session, job=progress.stripe_mirror(job))

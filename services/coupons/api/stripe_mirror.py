"""Mirroring jobs over HTTP: start one for a campaign, watch its progress."""

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AwareDatetime, BaseModel

from services.coupons.api.auth import require
from services.coupons.api.commands import call_of, runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.api.params import CampaignPath, JobPath, KeyOrFresh
from services.coupons.service import jobs
from services.coupons.stripe import mirror

router = APIRouter(prefix="/v1", tags=["stripe"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 503)
}


class MirrorJob(BaseModel):
    id: str
    campaign_id: str
    status: Literal["running", "done", "failed"]
    total: int
    mirrored: int
    coupon_id: str | None
    error: str | None
    created_at: AwareDatetime
    finished_at: AwareDatetime | None


@router.post(
    "/campaigns/{campaign_id}/stripe-mirror",
    status_code=202,
    response_model=MirrorJob,
    responses=ERRORS,
    dependencies=[Depends(require("admin"))],
)
async def start_mirror(
    campaign_id: CampaignPath, request: Request, response: Response, idempotency_key: KeyOrFresh
) -> dict[str, Any]:
    """Create the campaign's Stripe Coupon and a PromotionCode per code, in the background
    (at most STRIPE_RATE_LIMIT requests/s). `202` with the job; a job already running for
    the campaign is returned instead of a second one."""
    job = await jobs.mirror_to_stripe(call_of(request), campaign_id, idempotency_key)
    response.headers["Location"] = f"/v1/stripe-mirrors/{job['id']}"
    return job


@router.get(
    "/stripe-mirrors/{job_id}",
    response_model=MirrorJob,
    responses=ERRORS,
    dependencies=[Depends(require("analyst"))],
)
async def get_mirror(job_id: JobPath, request: Request) -> dict[str, Any]:
    """A mirroring job's progress: `mirrored` of `total` codes."""
    async with runtime_of(request).pool.acquire() as conn:
        job = await mirror.get_job(conn, job_id)
    if job is None:
        raise ApiError(404, "mirror_not_found", f"no mirroring job {job_id}")
    return job

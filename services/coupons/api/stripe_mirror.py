"""Mirroring jobs over HTTP: start one for a campaign, watch its progress."""

from typing import Any, Literal
from uuid import NAMESPACE_URL, uuid4, uuid5

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AwareDatetime, BaseModel

from projections import campaigns
from services.coupons.api.auth import require
from services.coupons.api.commands import runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.api.params import CampaignPath, IdempotencyKey, JobPath
from services.coupons.stripe import mirror

router = APIRouter(prefix="/v1", tags=["stripe"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 503)
}
JOBS = uuid5(NAMESPACE_URL, "growthos-coupons/stripe-mirror")


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
    campaign_id: CampaignPath,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Create the campaign's Stripe Coupon and a PromotionCode per code, in the background
    (at most STRIPE_RATE_LIMIT requests/s). `202` with the job; a job already running for
    the campaign is returned instead of a second one."""
    runtime = runtime_of(request)
    if not runtime.settings.stripe_api_key:
        raise ApiError(503, "stripe_not_configured", "STRIPE_API_KEY is not set")
    key = idempotency_key or uuid4().hex
    response.headers["Idempotency-Key"] = key
    async with runtime.pool.acquire() as conn:
        campaign = await campaigns.get(conn, campaign_id)
        if campaign is None:
            raise ApiError(404, "campaign_not_found", f"no campaign {campaign_id}")
        if campaign["status"] == "ended":
            raise ApiError(409, "ended", "the campaign has ended")
        job_id = str(uuid5(JOBS, f"{campaign_id}:{key}"))
        job = await mirror.create_job(conn, job_id, campaign, getattr(request.state, "actor", None))
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

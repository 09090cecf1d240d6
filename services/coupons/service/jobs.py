"""Background jobs a call starts for a campaign: a batch of unique codes, a Stripe mirror.
Starting one again with the same idempotency key gives the same job."""

from typing import Annotated, Any
from uuid import NAMESPACE_URL, uuid5

from pydantic import BaseModel, Field

from contracts.reasons import Reason
from contracts.rules import CodePattern
from projections import campaigns
from projections.db import Connection
from services.coupons.domain.codes import PatternTooWeak, check_pattern
from services.coupons.service.calls import Call
from services.coupons.service.refusals import Refused
from services.coupons.store import code_batches
from services.coupons.stripe import mirror

BATCH_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/code-batch")
MIRROR_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/stripe-mirror")
MAX_BATCH = 1_000_000


class BatchRequest(BaseModel):
    count: Annotated[int, Field(ge=1, le=MAX_BATCH)]
    pattern: CodePattern = CodePattern()


async def generate_codes(
    call: Call, campaign_id: str, body: BatchRequest, idempotency_key: str
) -> dict[str, Any]:
    """Start generating `count` unique codes; the job. Refused when the pattern is guessable
    (under 60 bits) or its space is too small for the count."""
    try:
        check_pattern(body.pattern, body.count)
    except PatternTooWeak as weak:
        raise Refused(weak.reason.value, weak.detail, field="pattern") from weak
    batch_id = str(uuid5(BATCH_NAMESPACE, f"{campaign_id}:{idempotency_key}"))
    async with call.runtime.pool.acquire() as conn:
        await _open_campaign(conn, campaign_id)
        await code_batches.create(conn, batch_id, campaign_id, body.count, body.pattern, call.actor)
        batch = await code_batches.get(conn, batch_id)
    assert batch is not None
    return batch


async def mirror_to_stripe(call: Call, campaign_id: str, idempotency_key: str) -> dict[str, Any]:
    """Start creating the campaign's Stripe Coupon and a PromotionCode per code; the job, or
    the one already running for the campaign."""
    if not call.runtime.settings.stripe_api_key:
        raise Refused("stripe_not_configured", "STRIPE_API_KEY is not set")
    job_id = str(uuid5(MIRROR_NAMESPACE, f"{campaign_id}:{idempotency_key}"))
    async with call.runtime.pool.acquire() as conn:
        campaign = await _open_campaign(conn, campaign_id)
        return await mirror.create_job(conn, job_id, campaign, call.actor)


async def _open_campaign(conn: Connection, campaign_id: str) -> dict[str, Any]:
    """The campaign's row; refused if there is none or it has ended."""
    campaign = await campaigns.get(conn, campaign_id)
    if campaign is None:
        raise Refused(Reason.CAMPAIGN_NOT_FOUND.value, f"no campaign {campaign_id}")
    if campaign["status"] == "ended":
        raise Refused(Reason.ENDED.value, "the campaign has ended")
    return campaign

"""`/v1/campaigns`: define a campaign through the decider, read it from the projection."""

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any
from uuid import NAMESPACE_URL, uuid4, uuid5

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import AwareDatetime, BaseModel

from contracts.base import CampaignId
from contracts.commands import CampaignName, DefineCampaign
from contracts.envelope import Envelope
from contracts.money import Discount
from projections import campaigns
from projections.watermarks import ProjectionNotCaughtUp
from services.coupons.api.errors import REFUSAL_STATUS, ApiError, ErrorResponse
from services.coupons.bus.gateway import DecisionPending
from services.coupons.runtime import Runtime

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

IDEMPOTENCY_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/idempotency")


class CampaignRequest(BaseModel):
    id: CampaignId | None = None
    name: CampaignName
    discount: Discount


class Campaign(BaseModel):
    id: str
    name: str
    discount: Discount
    defined_at: AwareDatetime
    defined_by: str | None


class CampaignPage(BaseModel):
    data: list[Campaign]
    next_cursor: str | None


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _correlation_id(request: Request) -> str:
    return str(request.state.correlation_id)


@router.post(
    "",
    status_code=201,
    response_model=Campaign,
    responses={
        409: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
async def define_campaign(
    body: CampaignRequest,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> dict[str, Any]:
    """Define a campaign. Returns once the campaign is readable (read-your-writes).

    Send an `Idempotency-Key` to retry safely: the same key and body give the same answer, and
    without a body `id` the campaign id is derived from the key. The key used (yours or one
    made for you) comes back in the `Idempotency-Key` response header.
    """
    runtime = _runtime(request)
    key = idempotency_key or uuid4().hex
    campaign_id = body.id or str(uuid5(IDEMPOTENCY_NAMESPACE, key))
    command = Envelope[DefineCampaign](
        key=campaign_id,
        correlation_id=_correlation_id(request),
        idempotency_key=key,
        data=DefineCampaign(campaign_id=campaign_id, name=body.name, discount=body.discount),
    )
    retry = {"Idempotency-Key": key, "Retry-After": "1"}
    response.headers["Idempotency-Key"] = key
    try:
        reply = await runtime.gateway.decide(command)
    except DecisionPending as error:
        raise ApiError(
            503,
            "decision_pending",
            "the command is queued; retry with the same Idempotency-Key",
            headers=retry,
        ) from error
    if reply.outcome == "rejected":
        assert reply.reason is not None
        status = REFUSAL_STATUS[reply.reason]
        raise ApiError(
            status, reply.reason.value, reply.detail or "", headers={"Idempotency-Key": key}
        )
    try:
        for position in reply.events:
            await runtime.watermarks.wait(
                campaigns.NAME,
                position.partition,
                position.offset,
                runtime.settings.command_timeout_s,
            )
    except ProjectionNotCaughtUp as error:
        raise ApiError(
            503,
            "projection_lagging",
            "accepted, not yet readable; retry with the same Idempotency-Key",
            headers=retry,
        ) from error
    async with runtime.pool.acquire() as conn:
        row = await campaigns.get(conn, campaign_id)
    assert row is not None, "the projection reached the event but has no row"
    response.headers["Location"] = f"/v1/campaigns/{campaign_id}"
    return row


@router.get("/{campaign_id}", response_model=Campaign, responses={404: {"model": ErrorResponse}})
async def get_campaign(campaign_id: str, request: Request) -> dict[str, Any]:
    async with _runtime(request).pool.acquire() as conn:
        row = await campaigns.get(conn, campaign_id)
    if row is None:
        raise ApiError(404, "campaign_not_found", f"no campaign {campaign_id}")
    return row


@router.get("", response_model=CampaignPage, responses={422: {"model": ErrorResponse}})
async def list_campaigns(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first. Pass `next_cursor` back as `cursor` for the next page."""
    after = _decode_cursor(cursor) if cursor else None
    async with _runtime(request).pool.acquire() as conn:
        rows = await campaigns.page(conn, limit, after)
    next_cursor = _encode_cursor(rows[-1]) if len(rows) == limit else None
    return {"data": rows, "next_cursor": next_cursor}


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = f"{row['defined_at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, _, campaign_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), campaign_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise ApiError(
            422, "invalid_cursor", "cursor is not one this API returned", field="cursor"
        ) from error

"""`/v1/campaigns`: define campaigns, change their status, distribute their code, read them."""

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, TypeAdapter

from contracts.base import CampaignId
from contracts.commands import Status
from contracts.money import Discount
from contracts.rules import Duration, Eligibility, Limits, Validity
from services.coupons.api.auth import require
from services.coupons.api.commands import call_of, runtime_of
from services.coupons.api.errors import ApiError, ErrorResponse
from services.coupons.api.params import CampaignPath, Cursor, KeyOrFresh
from services.coupons.service import campaigns as campaigns_service
from services.coupons.service.campaign_models import (
    CampaignRequest,
    CampaignUpdate,
    DistributionRequest,
    DistributionResult,
    StatusChange,
)

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
ADMIN = [Depends(require("admin"))]
ANALYST = [Depends(require("analyst"))]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}


class Usage(BaseModel):
    distributed: int
    redemptions: int
    budget_spent: int


class Campaign(BaseModel):
    id: str
    name: str
    discount: Discount
    code: str | None
    status: Status
    duration: Duration
    validity: Validity
    limits: Limits
    eligibility: Eligibility
    usage: Usage
    defined_at: AwareDatetime
    defined_by: str | None


class CampaignPage(BaseModel):
    data: list[Campaign]
    next_cursor: str | None


@router.post("", status_code=201, response_model=Campaign, responses=ERRORS, dependencies=ADMIN)
async def define_campaign(
    body: CampaignRequest, request: Request, response: Response, idempotency_key: KeyOrFresh
) -> dict[str, Any]:
    """Define a campaign. Returns once the campaign is readable (read-your-writes).

    Send an `Idempotency-Key` to retry safely: the same key and body give the same answer, and
    without a body `id` the campaign id is derived from the key. The key used (yours or one
    made for you) comes back in the `Idempotency-Key` response header.
    """
    defined = await campaigns_service.define(call_of(request), body, idempotency_key)
    response.headers["Location"] = f"/v1/campaigns/{defined['id']}"
    return defined


@router.post("/{campaign_id}/status", response_model=Campaign, responses=ERRORS, dependencies=ADMIN)
async def change_status(
    campaign_id: CampaignPath, body: StatusChange, request: Request, idempotency_key: KeyOrFresh
) -> dict[str, Any]:
    """draft → active; active ↔ paused; anything but ended → ended (final)."""
    return await campaigns_service.change_status(
        call_of(request), campaign_id, body, idempotency_key
    )


@router.patch("/{campaign_id}", response_model=Campaign, responses=ERRORS, dependencies=ADMIN)
async def update_campaign(
    campaign_id: CampaignPath, body: CampaignUpdate, request: Request, idempotency_key: KeyOrFresh
) -> dict[str, Any]:
    """Change a campaign's name, window, limits or eligibility, with the reason recorded in
    its audit trail. Redemptions already made stand; later ones follow the new terms."""
    return await campaigns_service.update(call_of(request), campaign_id, body, idempotency_key)


@router.get("/{campaign_id}", response_model=Campaign, responses=ERRORS, dependencies=ANALYST)
async def get_campaign(campaign_id: CampaignPath, request: Request) -> dict[str, Any]:
    return await campaigns_service.campaign(runtime_of(request), campaign_id)


@router.get("", response_model=CampaignPage, responses=ERRORS, dependencies=ANALYST)
async def list_campaigns(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Newest first. Pass `next_cursor` back as `cursor` for the next page."""
    after = _decode_cursor(cursor) if cursor else None
    rows = await campaigns_service.page(runtime_of(request), limit, after)
    next_cursor = _encode_cursor(rows[-1]) if len(rows) == limit else None
    return {"data": rows, "next_cursor": next_cursor}


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = f"{row['defined_at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


_CAMPAIGN_ID = TypeAdapter(CampaignId)


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, _, campaign_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        # what a campaign id can be (no NUL for SQL): its ValidationError is a ValueError
        return datetime.fromisoformat(at), _CAMPAIGN_ID.validate_python(campaign_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise ApiError(
            422, "invalid_cursor", "cursor is not one this API returned", field="cursor"
        ) from error


class AuditEntry(BaseModel):
    event_id: str
    type: str
    actor: str | None
    occurred_at: AwareDatetime
    correlation_id: str
    detail: dict[str, Any]


@router.get(
    "/{campaign_id}/audit", response_model=list[AuditEntry], responses=ERRORS, dependencies=ANALYST
)
async def audit(campaign_id: CampaignPath, request: Request) -> list[dict[str, Any]]:
    """Every decision about the campaign, oldest first: what, who (API key), when, and why
    (the reason given, or the refusal's). Includes every decision answered before the call:
    redemptions answer before the `campaigns` projection has them, so this waits for it."""
    return await campaigns_service.audit_trail(runtime_of(request), campaign_id)


@router.post(
    "/{campaign_id}/distributions",
    response_model=DistributionResult,
    responses=ERRORS,
    dependencies=ADMIN,
)
async def distribute(
    campaign_id: CampaignPath,
    body: DistributionRequest,
    request: Request,
    idempotency_key: KeyOrFresh,
) -> DistributionResult:
    """Give the campaign's code to up to 1,000 contacts. Each one is announced on the public
    `coupons.issued.v1` topic for sequence engines. Retrying with the same `Idempotency-Key`
    gives each contact their first distribution again, never a second one."""
    return await campaigns_service.distribute(call_of(request), campaign_id, body, idempotency_key)

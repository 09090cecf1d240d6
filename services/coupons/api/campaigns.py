"""`/v1/campaigns`: define campaigns, change their status, distribute their code, read them."""

import asyncio
import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import NAMESPACE_URL, uuid4, uuid5

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from contracts.base import CampaignId
from contracts.bounds import EmailText, Id128, Label, Note
from contracts.commands import (
    CampaignName,
    ChangeCampaignStatus,
    Channel,
    DefineCampaign,
    DistributeCode,
    Status,
    UpdateCampaign,
)
from contracts.money import Discount
from contracts.reasons import Reason
from contracts.rules import Duration, Eligibility, Limits, Validity
from projections import campaigns
from services.coupons.api.auth import require
from services.coupons.api.commands import caught_up, execute, runtime_of
from services.coupons.api.errors import ApiError, ErrorBody, ErrorResponse
from services.coupons.api.params import CampaignPath, IdempotencyKey
from services.coupons.domain.codes import normalise
from services.coupons.store import code_claims

_Part = TypeVar("_Part", Validity, Limits, Eligibility)

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
ADMIN = [Depends(require("admin"))]
ANALYST = [Depends(require("analyst"))]

IDEMPOTENCY_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/idempotency")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}


class CampaignRequest(BaseModel):
    id: CampaignId | None = None
    name: CampaignName
    discount: Discount
    code: Annotated[
        Label | None, Field(description="shared (vanity) code; case and '-' ignored")
    ] = None
    status: Literal["draft", "active"] = "active"
    duration: Duration = Duration()
    validity: Validity = Field(
        default_factory=Validity, description="expires_at defaults to COUPONS_DEFAULT_EXPIRY_DAYS"
    )
    limits: Limits = Limits()
    eligibility: Eligibility = Eligibility()


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


class CampaignUpdate(BaseModel):
    """What to change, and why. Within `validity`, `limits` and `eligibility`, only the fields
    sent change; the discount, duration and codes cannot change."""

    name: CampaignName | None = None
    validity: Validity | None = None
    limits: Limits | None = None
    eligibility: Eligibility | None = None
    reason: Annotated[Note, Field(min_length=1, description="why, for the audit")]


class StatusChange(BaseModel):
    status: Literal["active", "paused", "ended"]
    reason: Note = ""


@router.post("", status_code=201, response_model=Campaign, responses=ERRORS, dependencies=ADMIN)
async def define_campaign(
    body: CampaignRequest,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Define a campaign. Returns once the campaign is readable (read-your-writes).

    Send an `Idempotency-Key` to retry safely: the same key and body give the same answer, and
    without a body `id` the campaign id is derived from the key. The key used (yours or one
    made for you) comes back in the `Idempotency-Key` response header.
    """
    runtime = runtime_of(request)
    key = idempotency_key or uuid4().hex
    response.headers["Idempotency-Key"] = key
    campaign_id = body.id or str(uuid5(IDEMPOTENCY_NAMESPACE, key))
    code = _normalised(body.code) if body.code else None
    try:
        command = DefineCampaign(
            campaign_id=campaign_id,
            name=body.name,
            discount=body.discount,
            code=code,
            status=body.status,
            duration=body.duration,
            validity=body.validity,
            limits=body.limits,
            eligibility=body.eligibility,
            default_expiry_days=runtime.settings.default_expiry_days,
        )
    except ValidationError as error:
        raise ApiError(422, "invalid_request", error.errors()[0]["msg"]) from error
    if code is not None:
        async with runtime.pool.acquire() as conn:
            if not await code_claims.claim(conn, code, campaign_id):
                raise ApiError(
                    409, "code_taken", f"code {code} belongs to another campaign", field="code"
                )
    try:
        await execute(request, campaign_id, command, key)
    except ApiError as refused:
        if code is not None and refused.code == Reason.CAMPAIGN_EXISTS:
            await _release_unused_claim(request, code, campaign_id)
        raise
    response.headers["Location"] = f"/v1/campaigns/{campaign_id}"
    return await _read(request, campaign_id)


@router.post("/{campaign_id}/status", response_model=Campaign, responses=ERRORS, dependencies=ADMIN)
async def change_status(
    campaign_id: CampaignPath,
    body: StatusChange,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """draft → active; active ↔ paused; anything but ended → ended (final)."""
    key = idempotency_key or uuid4().hex
    response.headers["Idempotency-Key"] = key
    command = ChangeCampaignStatus(campaign_id=campaign_id, status=body.status, reason=body.reason)
    await execute(request, campaign_id, command, key)
    return await _read(request, campaign_id)


@router.patch("/{campaign_id}", response_model=Campaign, responses=ERRORS, dependencies=ADMIN)
async def update_campaign(
    campaign_id: CampaignPath,
    body: CampaignUpdate,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Change a campaign's name, window, limits or eligibility, with the reason recorded in
    its audit trail. Redemptions already made stand; later ones follow the new terms."""
    current = await _read(request, campaign_id)
    key = idempotency_key or uuid4().hex
    response.headers["Idempotency-Key"] = key
    command = UpdateCampaign(
        campaign_id=campaign_id,
        name=body.name,
        validity=_merged("validity", current, body.validity),
        limits=_merged("limits", current, body.limits),
        eligibility=_merged("eligibility", current, body.eligibility),
        reason=body.reason,
    )
    await execute(request, campaign_id, command, key)
    return await _read(request, campaign_id)


def _merged(part: str, campaign: dict[str, Any], sent: _Part | None) -> _Part | None:
    """The campaign's current `part` with the fields that were sent replaced; None when
    nothing was sent. Refused as `invalid_terms` when the result is inconsistent."""
    if sent is None:
        return None
    try:
        return type(sent).model_validate({**campaign[part], **sent.model_dump(exclude_unset=True)})
    except ValidationError as error:
        message = error.errors()[0]["msg"]
        raise ApiError(422, "invalid_terms", message, field=part) from error


@router.get("/{campaign_id}", response_model=Campaign, responses=ERRORS, dependencies=ANALYST)
async def get_campaign(campaign_id: CampaignPath, request: Request) -> dict[str, Any]:
    return await _read(request, campaign_id)


@router.get("", response_model=CampaignPage, responses=ERRORS, dependencies=ANALYST)
async def list_campaigns(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first. Pass `next_cursor` back as `cursor` for the next page."""
    after = _decode_cursor(cursor) if cursor else None
    async with runtime_of(request).pool.acquire() as conn:
        rows = await campaigns.page(conn, limit, after)
    next_cursor = _encode_cursor(rows[-1]) if len(rows) == limit else None
    return {"data": rows, "next_cursor": next_cursor}


async def _read(request: Request, campaign_id: str) -> dict[str, Any]:
    """The campaign from its read model, with its usage from this process's campaign view:
    a redemption is answered before it is projected, and the view already has it."""
    async with runtime_of(request).pool.acquire() as conn:
        row = await campaigns.get(conn, campaign_id)
    if row is None:
        raise ApiError(404, "campaign_not_found", f"no campaign {campaign_id}")
    folded = runtime_of(request).view.campaign(campaign_id)
    if folded is not None:
        row["usage"] = {
            "distributed": folded.distributed,
            "redemptions": folded.redemptions,
            "budget_spent": folded.budget_spent,
        }
    return row


async def _release_unused_claim(request: Request, code: str, campaign_id: str) -> None:
    """The campaign existed already: the code claimed for this attempt is given back unless
    it is the existing campaign's own, so no later campaign is told `code_taken` for it."""
    try:
        await caught_up(request)  # the view then holds the existing campaign's definition
    except ApiError:
        return  # the claim stays: harmless, and the refusal is what the caller must see
    existing = runtime_of(request).view.campaign(campaign_id)
    if existing is None or existing.code != code:
        async with runtime_of(request).pool.acquire() as conn:
            await code_claims.release(conn, code, campaign_id)


def _normalised(code: str) -> str:
    normal = normalise(code)
    if not (3 <= len(normal) <= 64 and normal.isascii() and normal.isalnum()):
        raise ApiError(422, "invalid_code", "a code is 3 to 64 letters and digits", field="code")
    return normal


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
    await _read(request, campaign_id)
    await caught_up(request)
    async with runtime_of(request).pool.acquire() as conn:
        return await campaigns.audit(conn, campaign_id)


class Recipient(BaseModel):
    contact_id: Id128
    email: EmailText | None = None


class DistributionRequest(BaseModel):
    contacts: Annotated[list[Recipient], Field(min_length=1, max_length=1000)]
    channel: Channel = "api"
    source_ref: Annotated[Label | None, Field(description="the sequence, broadcast or nudge")] = (
        None
    )


class Distribution(BaseModel):
    distribution_id: str
    contact_id: str
    code: str
    channel: Channel
    source_ref: str | None
    expires_at: AwareDatetime | None
    distributed_at: AwareDatetime


class Refused(BaseModel):
    contact_id: str
    error: ErrorBody


class DistributionResult(BaseModel):
    distributed: list[Distribution]
    refused: list[Refused]


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
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> DistributionResult:
    """Give the campaign's code to up to 1,000 contacts. Each one is announced on the public
    `coupons.issued.v1` topic for sequence engines. Retrying with the same `Idempotency-Key`
    gives each contact their first distribution again, never a second one."""
    await _read(request, campaign_id)
    key = idempotency_key or uuid4().hex
    response.headers["Idempotency-Key"] = key

    async def one(recipient: Recipient) -> Distribution | Refused:
        contact_key = f"{key}:{recipient.contact_id}"
        command = DistributeCode(
            campaign_id=campaign_id,
            distribution_id=str(uuid5(IDEMPOTENCY_NAMESPACE, f"{campaign_id}:{contact_key}")),
            contact_id=recipient.contact_id,
            email=recipient.email,
            channel=body.channel,
            source_ref=body.source_ref,
        )
        try:
            await execute(request, campaign_id, command, contact_key)
        except ApiError as refused:
            if refused.status >= 500:
                raise
            error = ErrorBody(code=refused.code, message=refused.message)
            return Refused(contact_id=recipient.contact_id, error=error)
        async with runtime_of(request).pool.acquire() as conn:
            row = await campaigns.distribution(conn, command.distribution_id)
        return Distribution.model_validate(row)

    outcomes = await asyncio.gather(*(one(r) for r in body.contacts))
    return DistributionResult(
        distributed=[o for o in outcomes if isinstance(o, Distribution)],
        refused=[o for o in outcomes if isinstance(o, Refused)],
    )

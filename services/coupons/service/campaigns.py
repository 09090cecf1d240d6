"""Campaigns: define, change status, change terms, distribute codes, read one with its usage."""

import asyncio
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, uuid5

from pydantic import ValidationError

from contracts.commands import ChangeCampaignStatus, DefineCampaign, DistributeCode, UpdateCampaign
from contracts.reasons import Reason
from contracts.rules import Eligibility, Limits, Validity
from projections import campaigns
from services.coupons.domain.codes import normalise
from services.coupons.runtime import Runtime
from services.coupons.service.calls import Call
from services.coupons.service.campaign_models import (
    CampaignRequest,
    CampaignUpdate,
    Distribution,
    DistributionRequest,
    DistributionResult,
    NotDistributed,
    Recipient,
    StatusChange,
)
from services.coupons.service.commands import caught_up, decide
from services.coupons.service.refusals import ErrorBody, Refused
from services.coupons.store import code_claims

IDEMPOTENCY_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/idempotency")
_Part = TypeVar("_Part", Validity, Limits, Eligibility)


async def define(call: Call, body: CampaignRequest, idempotency_key: str) -> dict[str, Any]:
    """Define a campaign; return it once it is readable (read-your-writes). Without a body
    `id`, the campaign id is derived from the key, so a retry lands on the same campaign."""
    runtime = call.runtime
    campaign_id = body.id or str(uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key))
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
        raise Refused("invalid_request", error.errors()[0]["msg"]) from error
    if code is not None:
        async with runtime.pool.acquire() as conn:
            if not await code_claims.claim(conn, code, campaign_id):
                message = f"code {code} belongs to another campaign"
                raise Refused("code_taken", message, field="code")
    try:
        await decide(call, campaign_id, command, idempotency_key)
    except Refused as refused:
        if code is not None and refused.code == Reason.CAMPAIGN_EXISTS:
            await _release_unused_claim(runtime, code, campaign_id)
        raise
    return await campaign(runtime, campaign_id)


async def change_status(
    call: Call, campaign_id: str, body: StatusChange, idempotency_key: str
) -> dict[str, Any]:
    """draft → active; active ↔ paused; anything but ended → ended (final)."""
    command = ChangeCampaignStatus(campaign_id=campaign_id, status=body.status, reason=body.reason)
    await decide(call, campaign_id, command, idempotency_key)
    return await campaign(call.runtime, campaign_id)


async def update(
    call: Call, campaign_id: str, body: CampaignUpdate, idempotency_key: str
) -> dict[str, Any]:
    """Change a campaign's name, window, limits or eligibility, with the reason recorded in
    its audit trail. Redemptions already made stand; later ones follow the new terms."""
    current = await campaign(call.runtime, campaign_id)
    command = UpdateCampaign(
        campaign_id=campaign_id,
        name=body.name,
        validity=_merged("validity", current, body.validity),
        limits=_merged("limits", current, body.limits),
        eligibility=_merged("eligibility", current, body.eligibility),
        reason=body.reason,
    )
    await decide(call, campaign_id, command, idempotency_key)
    return await campaign(call.runtime, campaign_id)


def _merged(part: str, current: dict[str, Any], sent: _Part | None) -> _Part | None:
    """The campaign's current `part` with the fields that were sent replaced; None when
    nothing was sent. Refused as `invalid_terms` when the result is inconsistent."""
    if sent is None:
        return None
    try:
        return type(sent).model_validate({**current[part], **sent.model_dump(exclude_unset=True)})
    except ValidationError as error:
        message = error.errors()[0]["msg"]
        raise Refused(Reason.INVALID_TERMS.value, message, field=part) from error


async def distribute(
    call: Call, campaign_id: str, body: DistributionRequest, idempotency_key: str
) -> DistributionResult:
    """Give the campaign's code to up to 1,000 contacts, each announced on the public topic.
    Retrying with the same key gives each contact their first distribution again."""
    await campaign(call.runtime, campaign_id)

    async def one(recipient: Recipient) -> Distribution | NotDistributed:
        contact_key = f"{idempotency_key}:{recipient.contact_id}"
        command = DistributeCode(
            campaign_id=campaign_id,
            distribution_id=str(uuid5(IDEMPOTENCY_NAMESPACE, f"{campaign_id}:{contact_key}")),
            contact_id=recipient.contact_id,
            email=recipient.email,
            channel=body.channel,
            source_ref=body.source_ref,
        )
        try:
            await decide(call, campaign_id, command, contact_key)
        except Refused as refused:
            if refused.retry_after_s is not None:  # not refused for good: the call fails
                raise
            error = ErrorBody(code=refused.code, message=refused.message)
            return NotDistributed(contact_id=recipient.contact_id, error=error)
        async with call.runtime.pool.acquire() as conn:
            row = await campaigns.distribution(conn, command.distribution_id)
        return Distribution.model_validate(row)

    outcomes = await asyncio.gather(*(one(r) for r in body.contacts))
    return DistributionResult(
        distributed=[o for o in outcomes if isinstance(o, Distribution)],
        refused=[o for o in outcomes if isinstance(o, NotDistributed)],
    )


async def campaign(runtime: Runtime, campaign_id: str) -> dict[str, Any]:
    """The campaign from its read model, with its usage from this process's campaign view."""
    async with runtime.pool.acquire() as conn:
        row = await campaigns.get(conn, campaign_id)
    if row is None:
        raise Refused(Reason.CAMPAIGN_NOT_FOUND.value, f"no campaign {campaign_id}")
    return _with_usage(runtime, row)


async def page(runtime: Runtime, limit: int, after: tuple[Any, str] | None) -> list[dict[str, Any]]:
    """A page of campaigns, newest first, each with its usage from the campaign view."""
    async with runtime.pool.acquire() as conn:
        rows = await campaigns.page(conn, limit, after)
    return [_with_usage(runtime, row) for row in rows]


def _with_usage(runtime: Runtime, row: dict[str, Any]) -> dict[str, Any]:
    """The read model's row with the usage this process's campaign view has folded: a
    redemption is answered before it is projected, and the view already has it."""
    folded = runtime.view.campaign(row["id"])
    if folded is not None:
        row["usage"] = {
            "distributed": folded.distributed,
            "redemptions": folded.redemptions,
            "budget_spent": folded.budget_spent,
        }
    return row


async def audit_trail(runtime: Runtime, campaign_id: str) -> list[dict[str, Any]]:
    """Every decision about the campaign, oldest first, including every decision answered
    before the call: redemptions answer before the `campaigns` projection has them, so this
    waits for it."""
    await campaign(runtime, campaign_id)
    await caught_up(runtime)
    async with runtime.pool.acquire() as conn:
        return await campaigns.audit(conn, campaign_id)


async def _release_unused_claim(runtime: Runtime, code: str, campaign_id: str) -> None:
    """The campaign existed already: the code claimed for this attempt is given back unless
    it is the existing campaign's own, so no later campaign is told `code_taken` for it."""
    try:
        await caught_up(runtime)  # the view then holds the existing campaign's definition
    except Refused:
        return  # the claim stays: harmless, and the refusal is what the caller must see
    existing = runtime.view.campaign(campaign_id)
    if existing is None or existing.code != code:
        async with runtime.pool.acquire() as conn:
            await code_claims.release(conn, code, campaign_id)


def _normalised(code: str) -> str:
    normal = normalise(code)
    if not (3 <= len(normal) <= 64 and normal.isascii() and normal.isalnum()):
        raise Refused("invalid_code", "a code is 3 to 64 letters and digits", field="code")
    return normal

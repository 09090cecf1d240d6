"""Change a campaign's terms: its name, window, limits and eligibility, with the reason for
the audit trail. Decided by the API's own use case (`service.campaigns.update`, as `PATCH
/v1/campaigns/{id}`), so a refusal carries the API's code and field, shown beside it."""

from typing import Any
from uuid import uuid4

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from projections import campaigns
from services.coupons.api.commands import call_of, runtime_of
from services.coupons.api.errors import ApiError
from services.coupons.api.params import CampaignPath
from services.coupons.dashboard import campaign_form
from services.coupons.dashboard.session import AdminChecked, SignedIn
from services.coupons.dashboard.templating import render
from services.coupons.service import campaigns as campaigns_service
from services.coupons.service.campaign_models import CampaignUpdate
from services.coupons.service.refusals import Refused
from services.coupons.store.dashboard_sessions import Session

router = APIRouter()

FIELDS = ("name", *campaign_form.RULES, "reason")
KNOWN_FIELDS = frozenset({*FIELDS, "validity", "limits", "eligibility"})


async def _campaign(request: Request, campaign_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        found = await campaigns.get(conn, campaign_id)
    if found is None:
        raise ApiError(404, "campaign_not_found", f"no campaign {campaign_id}")
    return found


def _form_page(
    request: Request,
    session: Session,
    campaign: dict[str, Any],
    values: dict[str, str],
    error: campaign_form.FieldError | None = None,
) -> HTMLResponse:
    return render(
        request,
        "terms.html",
        session,
        status_code=200 if error is None else 422,
        campaign=campaign,
        values=values,
        error=error,
        known_fields=KNOWN_FIELDS,
        idempotency_key=values.get("idempotency_key") or uuid4().hex,
    )


@router.get("/campaigns/{campaign_id}/terms")
async def terms_form(request: Request, session: SignedIn, campaign_id: CampaignPath) -> Response:
    if session.key.scope != "admin":
        return render(request, "forbidden.html", session, status_code=403)
    campaign = await _campaign(request, campaign_id)
    return _form_page(request, session, campaign, _shown(campaign))


def _shown(campaign: dict[str, Any]) -> dict[str, str]:
    values = {"name": campaign["name"]}
    for part in ("validity", "limits", "eligibility"):
        values.update(campaign_form.values(part, campaign[part]))
    return values


@router.post("/campaigns/{campaign_id}/terms")
async def change_terms(
    request: Request, session: AdminChecked, campaign_id: CampaignPath
) -> Response:
    campaign = await _campaign(request, campaign_id)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    key = (form.get("idempotency_key") or uuid4().hex)[:255]
    try:
        changed = campaign_form.changes(form, _shown(campaign), FIELDS)
        body = CampaignUpdate.model_validate({**changed, "reason": form.get("reason", "")})
        await campaigns_service.update(call_of(request), campaign_id, body, key)
    except ValidationError as error:
        return _form_page(request, session, campaign, form, campaign_form.invalid(error))
    except Refused as error:
        return _form_page(request, session, campaign, form, campaign_form.refused(error))
    return RedirectResponse(f"/campaigns/{campaign_id}", status_code=303)

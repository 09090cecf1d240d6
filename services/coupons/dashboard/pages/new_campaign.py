"""New campaign: a form with every rule of `POST /v1/campaigns`. The post is decided by the
API's own use case (`service.campaigns.define`: the same model, checks and idempotency), so
a refusal carries the API's code and field and is shown beside that field."""

from typing import Any
from uuid import uuid4

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from services.coupons.api.commands import call_of
from services.coupons.dashboard import campaign_form
from services.coupons.dashboard.session import AdminChecked, SignedIn
from services.coupons.dashboard.templating import render
from services.coupons.service import campaigns as campaigns_service
from services.coupons.service.campaign_models import CampaignRequest
from services.coupons.service.refusals import Refused
from services.coupons.store.dashboard_sessions import Session

router = APIRouter()

FIELDS = ("name", "code", "status", "duration.kind", "duration.months", *campaign_form.RULES)
KNOWN_FIELDS = frozenset(
    {*FIELDS, *campaign_form.DISCOUNT_FIELDS["percent"], "discount.amount_off"}
    | {"discount", "duration", "validity", "limits", "eligibility"}
)
"""Fields (and groups) the form shows an error beside; any other error is shown on top."""
DEFAULTS = {
    "discount.kind": "percent",
    "status": "active",
    "duration.kind": "once",
    "limits.per_contact": "1",
    "limits.reservation_ttl_s": "900",
    "eligibility.bound_to_contact": "on",
}


def _form_page(
    request: Request,
    session: Session,
    values: dict[str, str],
    error: campaign_form.FieldError | None = None,
) -> HTMLResponse:
    return render(
        request,
        "new_campaign.html",
        session,
        status_code=200 if error is None else 422,
        values=values,
        error=error,
        known_fields=KNOWN_FIELDS,
        idempotency_key=values.get("idempotency_key") or uuid4().hex,
    )


@router.get("/campaigns/new")
async def new_campaign_form(request: Request, session: SignedIn) -> HTMLResponse:
    if session.key.scope != "admin":
        return render(request, "forbidden.html", session, status_code=403)
    return _form_page(request, session, dict(DEFAULTS))


@router.post("/campaigns/new")
async def define(request: Request, session: AdminChecked) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    fields = (*campaign_form.discount_fields(form), *FIELDS)
    sent: dict[str, Any] = campaign_form.body(form, fields)
    key = form.get("idempotency_key") or uuid4().hex
    try:
        body = CampaignRequest.model_validate(sent)
        created = await campaigns_service.define(call_of(request), body, key[:255])
    except ValidationError as error:
        return _form_page(request, session, form, campaign_form.invalid(error))
    except Refused as error:
        return _form_page(request, session, form, campaign_form.refused(error))
    return RedirectResponse(f"/campaigns/{created['id']}", status_code=303)

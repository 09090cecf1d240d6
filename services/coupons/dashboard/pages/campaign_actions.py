"""Admin actions on a campaign, as forms: each calls the same use case as the API
(`service.campaigns.change_status`; idempotency key from the form, so a double submit is one
effect; the audit actor is the signed-in key)."""

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse

from services.coupons.api.commands import call_of
from services.coupons.dashboard.session import Checked, CsrfRefused
from services.coupons.service import campaigns
from services.coupons.service.campaign_models import StatusChange
from services.coupons.service.refusals import Refused

router = APIRouter()


@router.post("/campaigns/{campaign_id}/status")
async def change_status(
    request: Request,
    session: Checked,
    campaign_id: Annotated[str, Path(max_length=100)],
    status: Annotated[Literal["active", "paused", "ended"], Form()],
    idempotency_key: Annotated[str, Form(min_length=8, max_length=100)],
) -> RedirectResponse:
    if session.key.scope != "admin":
        raise CsrfRefused  # the form is not shown to analysts: a forged post gets a 403
    change = StatusChange(status=status, reason="dashboard")
    page = f"/campaigns/{quote(campaign_id)}"
    try:
        await campaigns.change_status(call_of(request), campaign_id, change, idempotency_key)
    except Refused as error:
        return RedirectResponse(f"{page}?refused={quote(error.code)}", status_code=303)
    return RedirectResponse(page, status_code=303)

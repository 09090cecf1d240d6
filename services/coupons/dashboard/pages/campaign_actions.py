"""Admin actions on a campaign, as forms: each decides the same command as the API, through
the same `execute` (idempotency key from the form, so a double submit is one effect; the audit
actor is the signed-in key)."""

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse

from contracts.commands import ChangeCampaignStatus
from services.coupons.api.commands import execute
from services.coupons.api.errors import ApiError
from services.coupons.dashboard.session import Checked, CsrfRefused

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
    command = ChangeCampaignStatus(campaign_id=campaign_id, status=status, reason="dashboard")
    page = f"/campaigns/{quote(campaign_id)}"
    try:
        await execute(request, campaign_id, command, idempotency_key)
    except ApiError as error:
        return RedirectResponse(f"{page}?refused={quote(error.code)}", status_code=303)
    return RedirectResponse(page, status_code=303)

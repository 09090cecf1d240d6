"""Admin actions on a campaign, as forms: each calls the same use case as the API
(`service.campaigns.change_status`; idempotency key from the form, so a double submit is one
effect; the audit actor is the signed-in key)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse

from services.coupons.api.commands import call_of
from services.coupons.dashboard.redirects import back_to_campaign
from services.coupons.dashboard.session import AdminChecked
from services.coupons.service import campaigns
from services.coupons.service.campaign_models import StatusChange

router = APIRouter()


@router.post("/campaigns/{campaign_id}/status")
async def change_status(
    request: Request,
    session: AdminChecked,
    campaign_id: Annotated[str, Path(max_length=100)],
    status: Annotated[Literal["active", "paused", "ended"], Form()],
    idempotency_key: Annotated[str, Form(min_length=8, max_length=100)],
) -> RedirectResponse:
    body = StatusChange(status=status, reason="dashboard")

    async def change() -> str:
        await campaigns.change_status(call_of(request), campaign_id, body, idempotency_key)
        return ""

    return await back_to_campaign(campaign_id, None, change)

"""The dashboard, served by the service at `/`: server-rendered pages, signed in with an API
key exchanged for a session cookie. Each page is one router module in `pages/` and one
template in `templates/`; `PAGES` lists them (docs/dashboard.md)."""

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from services.coupons.dashboard.pages import (
    automations,
    campaign,
    campaign_actions,
    campaign_codes,
    campaign_mirror,
    campaign_terms,
    campaigns,
    contact,
    new_campaign,
    operations,
    segments,
    sign_in,
)
from services.coupons.dashboard.session import CsrfRefused, SignInRequired

PAGES = (
    sign_in,
    campaigns,
    new_campaign,
    campaign,
    campaign_actions,
    campaign_codes,
    campaign_mirror,
    campaign_terms,
    contact,
    operations,
    automations,
    segments,
)
"""In route order: `/campaigns/new` before `/campaigns/{campaign_id}`."""


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/sign-in", status_code=303)


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("This form expired or came from another site: reload it.", 403)


def install(app: FastAPI) -> None:
    for page in PAGES:
        app.include_router(page.router, include_in_schema=False)
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_exception_handler(CsrfRefused, _csrf_refused)

"""Sign in with an API key (exchanged for a session cookie) and sign out."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.coupons.api.commands import runtime_of
from services.coupons.dashboard.session import (
    CAN_SIGN_IN,
    COOKIE,
    LIFETIME,
    Checked,
    same_origin,
)
from services.coupons.dashboard.templating import render
from services.coupons.store import api_keys, dashboard_sessions

router = APIRouter()


@router.get("/sign-in")
async def sign_in_form(request: Request) -> HTMLResponse:
    return render(request, "sign_in.html", None, error=None)


@router.post("/sign-in")
async def sign_in(request: Request, api_key: Annotated[str, Form(max_length=200)]) -> Response:
    same_origin(request)
    async with runtime_of(request).pool.acquire() as conn:
        key = await api_keys.find(conn, api_key.strip())
        if key is None or key.scope not in CAN_SIGN_IN:
            error = (
                "Unknown or revoked API key."
                if key is None
                else f"A {key.scope} key cannot sign in here: use an admin or analyst key."
            )
            return render(request, "sign_in.html", None, status_code=401, error=error)
        token, _ = await dashboard_sessions.open_session(conn, key, LIFETIME)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(LIFETIME.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request, session: Checked) -> Response:
    async with runtime_of(request).pool.acquire() as conn:
        await dashboard_sessions.close(conn, request.cookies[COOKIE])
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response

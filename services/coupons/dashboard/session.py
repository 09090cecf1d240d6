"""Who is signed in: the session cookie, looked up in PostgreSQL on every page, and the CSRF
check every form post passes."""

import hmac
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Form, Request

from services.coupons.api.commands import runtime_of
from services.coupons.store import dashboard_sessions
from services.coupons.store.dashboard_sessions import Session

COOKIE = "coupons_session"
LIFETIME = timedelta(hours=8)
CAN_SIGN_IN = frozenset({"admin", "analyst"})


class SignInRequired(Exception):
    """No live session: the page redirects to the sign-in form."""


class CsrfRefused(Exception):
    """A form post without this session's CSRF token, or from another origin."""


async def current(request: Request) -> Session:
    """The signed-in session; raises `SignInRequired` when there is none (or it expired, or
    its key was revoked)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInRequired
    async with runtime_of(request).pool.acquire() as conn:
        session = await dashboard_sessions.find(conn, token)
    if session is None:
        raise SignInRequired
    request.state.actor = f"{session.key.id} ({session.key.name})"
    return session


def same_origin(request: Request) -> None:
    """Refuse a post whose Origin is another site (a login CSRF, before any session exists)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise CsrfRefused


async def checked(
    request: Request, session: Annotated[Session, Depends(current)], csrf: Annotated[str, Form()]
) -> Session:
    """The session of a form post that carries its CSRF token (double protection beside the
    SameSite=Strict cookie)."""
    same_origin(request)
    if not hmac.compare_digest(csrf, session.csrf_token):
        raise CsrfRefused
    return session


SignedIn = Annotated[Session, Depends(current)]
Checked = Annotated[Session, Depends(checked)]


async def admin_checked(session: Checked) -> Session:
    """The session of an admin's checked form post. The forms that change something are not
    shown to analysts, so an analyst's post is forged: refused (403) as a CSRF is."""
    if session.key.scope != "admin":
        raise CsrfRefused
    return session


AdminChecked = Annotated[Session, Depends(admin_checked)]

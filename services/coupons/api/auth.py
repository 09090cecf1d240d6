"""API-key authentication and scopes.

Send `Authorization: Bearer <key>`. `admin` may do everything; `checkout` may validate,
redeem, reverse and read redemptions; `analyst` may read campaigns,
contacts and segments; `ingest` may post contact events. A missing or unknown key
is 401 `unauthenticated`, a key without the scope is 403 `forbidden`. Found keys are cached
for a few seconds per replica, so a revoked key stops working within `CACHE_S`."""

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header, Request
from starlette.datastructures import State

from services.coupons.api.errors import ApiError
from services.coupons.store import api_keys
from services.coupons.store.api_keys import ApiKey, Scope

CACHE_S = 10.0
ALLOWED: dict[Scope, frozenset[Scope]] = {
    "admin": frozenset({"admin", "checkout", "analyst", "ingest"}),
    "checkout": frozenset({"checkout"}),
    "analyst": frozenset({"analyst"}),
    "ingest": frozenset({"ingest"}),
}


class KeyCache:
    def __init__(self) -> None:
        self._found: dict[str, tuple[float, ApiKey | None]] = {}

    def get(self, secret: str) -> tuple[bool, ApiKey | None]:
        hit = self._found.get(secret)
        if hit is None or time.monotonic() - hit[0] > CACHE_S:
            return False, None
        return True, hit[1]

    def put(self, secret: str, key: ApiKey | None) -> None:
        if len(self._found) > 10_000:
            self._found.clear()
        self._found[secret] = (time.monotonic(), key)


async def authorised(request: Request, authorization: str | None, scope: Scope) -> ApiKey:
    """The caller's key, which must carry `scope` (admin carries them all); it is recorded as
    the request's actor, for the audit trail."""
    key = await key_of(request.app.state, authorization)
    request.state.actor = actor_of(key)
    return carrying(key, scope)


async def key_of(app_state: State, authorization: str | None) -> ApiKey:
    """The caller's known key (from the cache, else PostgreSQL): 401 without one."""
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <API key>")
    cache: KeyCache = app_state.key_cache
    known, key = cache.get(secret)
    if not known:
        async with app_state.runtime.pool.acquire() as conn:
            key = await api_keys.find(conn, secret)
        cache.put(secret, key)
    if key is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked API key")
    return key


def carrying(key: ApiKey, scope: Scope) -> ApiKey:
    """`key`, if it carries `scope`: else 403."""
    if scope not in ALLOWED[key.scope]:
        raise ApiError(403, "forbidden", f"this key has scope {key.scope}; {scope} is needed")
    return key


def actor_of(key: ApiKey) -> str:
    """Who a request acts as, in the audit trail and for the guessing throttle."""
    return f"{key.id} ({key.name})"


def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: the caller's key, which must carry `scope`."""

    async def check(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> ApiKey:
        return await authorised(request, authorization, scope)

    return check

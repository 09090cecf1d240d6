"""Dashboard sessions: a random token in a cookie, its SHA-256 and a CSRF token in
PostgreSQL, so every replica knows every session (see migration 0044)."""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from projections.db import Connection
from services.coupons.store.api_keys import ApiKey, digest


@dataclass(frozen=True)
class Session:
    key: ApiKey
    csrf_token: str


async def open_session(conn: Connection, key: ApiKey, lifetime: timedelta) -> tuple[str, str]:
    """A new session for `key`: returns the cookie token (never stored) and its CSRF token.
    Expired sessions are swept on the way, so the table stays as small as what is live."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at < now()")
    await conn.execute(
        """INSERT INTO dashboard_sessions (token_hash, key_id, csrf_token, expires_at)
           VALUES ($1, $2, $3, now() + $4)""",
        digest(token),
        key.id,
        csrf,
        lifetime,
    )
    return token, csrf


async def find(conn: Connection, token: str) -> Session | None:
    """The live session of `token`: not expired, and its key not revoked."""
    row = await conn.fetchrow(
        """SELECT k.id, k.name, k.scope, s.csrf_token
           FROM dashboard_sessions s JOIN api_keys k ON k.id = s.key_id
           WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL""",
        digest(token),
    )
    if row is None:
        return None
    return Session(ApiKey(row["id"], row["name"], row["scope"]), row["csrf_token"])


async def close(conn: Connection, token: str) -> None:
    await conn.execute("DELETE FROM dashboard_sessions WHERE token_hash = $1", digest(token))

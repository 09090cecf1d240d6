"""API keys: each has one scope; only a SHA-256 of the key is stored, never the key.

Keys are 256-bit random strings, so a plain fast hash is enough (as for GitHub or Stripe
tokens); a slow password hash would only slow down every request."""

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from projections.db import Connection

Scope = Literal["admin", "checkout", "analyst", "ingest"]
SCOPES: tuple[Scope, ...] = ("admin", "checkout", "analyst", "ingest")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scope: Scope


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create(conn: Connection, name: str, scope: Scope) -> tuple[ApiKey, str]:
    """A new key: returns it with its secret, which is shown once and never stored."""
    key_id = f"key_{secrets.token_hex(6)}"
    secret = f"cpn_{scope}_{secrets.token_urlsafe(32)}"
    await conn.execute(
        "INSERT INTO api_keys (id, name, scope, key_hash) VALUES ($1, $2, $3, $4)",
        key_id,
        name,
        scope,
        digest(secret),
    )
    return ApiKey(key_id, name, scope), secret


async def find(conn: Connection, secret: str) -> ApiKey | None:
    row = await conn.fetchrow(
        "SELECT id, name, scope FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        digest(secret),
    )
    return None if row is None else ApiKey(row["id"], row["name"], row["scope"])


async def revoke(conn: Connection, key_id: str) -> bool:
    done = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    return bool(done.endswith(" 1"))


async def listing(conn: Connection) -> list[dict[str, object]]:
    """Every key, active or revoked, newest first: never the secret, not even its hash."""
    rows = await conn.fetch(
        "SELECT id, name, scope, created_at, revoked_at FROM api_keys ORDER BY created_at DESC"
    )
    return [dict(row) for row in rows]

"""Shared-code claims: the guard that one code string names one campaign, ever.

Claimed by the API before it sends `DefineCampaign` (a unique key in PostgreSQL, like a
unique index on the write side); read to route a redemption to its campaign."""

from projections.db import Connection


async def claim(conn: Connection, code: str, campaign_id: str) -> bool:
    """True if `code` is now (or already was) this campaign's; False if another's."""
    owner = await conn.fetchval(
        """INSERT INTO code_claims (code, campaign_id) VALUES ($1, $2)
           ON CONFLICT (code) DO UPDATE SET code = EXCLUDED.code
           RETURNING campaign_id""",
        code,
        campaign_id,
    )
    return bool(owner == campaign_id)


async def campaign_of(conn: Connection, code: str) -> str | None:
    owner: str | None = await conn.fetchval(
        "SELECT campaign_id FROM code_claims WHERE code = $1", code
    )
    return owner


async def release(conn: Connection, code: str, campaign_id: str) -> None:
    """Give back a claim its campaign never used: `DefineCampaign` was refused because the
    campaign existed already, with another code."""
    await conn.execute(
        "DELETE FROM code_claims WHERE code = $1 AND campaign_id = $2", code, campaign_id
    )

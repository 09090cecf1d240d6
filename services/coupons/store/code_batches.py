"""Bulk code generation jobs: the job rows, and the global claim of generated codes."""

import json
from typing import Any

import asyncpg

from contracts.rules import CodePattern
from projections.db import Connection

COLUMNS = (
    "id, campaign_id, requested, generated, status, next_chunk, error, created_at, finished_at"
)


async def create(
    conn: Connection,
    batch_id: str,
    campaign_id: str,
    requested: int,
    pattern: CodePattern,
    actor: str | None,
) -> None:
    await conn.execute(
        """INSERT INTO code_batches (id, campaign_id, requested, pattern, actor)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING""",
        batch_id,
        campaign_id,
        requested,
        pattern.model_dump_json(),
        actor,
    )


async def get(conn: Connection, batch_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM code_batches WHERE id = $1", batch_id)
    return None if row is None else dict(row)


async def running(conn: Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT id, campaign_id, requested, generated, pattern, next_chunk, actor
           FROM code_batches
           WHERE status = 'running' ORDER BY created_at"""
    )
    return [
        {**dict(r), "pattern": CodePattern.model_validate(json.loads(r["pattern"]))} for r in rows
    ]


async def advance(conn: Connection, batch_id: str, next_chunk: int, generated: int) -> None:
    await conn.execute(
        "UPDATE code_batches SET next_chunk = $2, generated = $3 WHERE id = $1",
        batch_id,
        next_chunk,
        generated,
    )


async def recount(conn: Connection, campaign_id: str, batch_id: str) -> int:
    """The batch's codes in the read model: for when a chunk's outcome was not recorded (after
    a crash, so rare enough to read through the campaign's codes)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM codes WHERE campaign_id = $1 AND batch_id = $2",
        campaign_id,
        batch_id,
    )
    return count


async def analyse_codes(conn: Connection) -> None:
    """Refresh the planner's statistics of `codes` after a batch, before anyone reads it: until
    autovacuum gets to it, a campaign's first page of codes would sort every one of them (a
    second for a million) instead of reading them in order from an index."""
    await conn.execute("ANALYZE codes")


async def finish(conn: Connection, batch_id: str, error: str | None = None) -> None:
    await conn.execute(
        """UPDATE code_batches SET status = $2, error = $3, finished_at = now() WHERE id = $1""",
        batch_id,
        "failed" if error else "done",
        error,
    )


async def claim_all(conn: Connection, codes: list[str], campaign_id: str) -> list[str]:
    """Claim every one of `codes` (distinct) that no campaign has yet; return those now this
    campaign's, in their order.

    Optimistic: random codes almost never meet a claimed one, so the chunk is first inserted
    in whole, in key order (which the index takes fastest); only if a code is taken does the
    claim go code by code, skipping the taken ones."""
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO code_claims (code, campaign_id)
                   SELECT unnest($1::text[]), $2""",
                sorted(codes),
                campaign_id,
            )
        return codes
    except asyncpg.UniqueViolationError:
        rows = await conn.fetch(
            """INSERT INTO code_claims (code, campaign_id) SELECT unnest($1::text[]), $2
               ON CONFLICT (code) DO NOTHING RETURNING code""",
            codes,
            campaign_id,
        )
        claimed = {r["code"] for r in rows}
        return [code for code in codes if code in claimed]

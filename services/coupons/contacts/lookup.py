"""Checkout's membership lookup: which of the segments a campaign names (to include or to
exclude) the contact belongs to now, read from `segment_members`, for the API to put in the
command so the decider stays pure. As fresh as the contacts processor's last committed poll
and the timer loop's last firing (docs/segments.md, "Freshness at checkout")."""

from collections.abc import Iterable

import asyncpg

from contracts.rules import Eligibility


async def member_segments(
    pool: asyncpg.Pool, contact_id: str, rules: Iterable[Eligibility]
) -> tuple[str, ...]:
    """The named segments `contact_id` is in, sorted; () when no rule names a segment (and
    then no query is made)."""
    wanted = sorted({s for r in rules for s in (*r.segments, *r.excluded_segments)})
    if not wanted:
        return ()
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT segment_id FROM segment_members
               WHERE contact_id = $1 AND segment_id = ANY($2::text[]) ORDER BY segment_id""",
            contact_id,
            wanted,
        )
    return tuple(r["segment_id"] for r in rows)

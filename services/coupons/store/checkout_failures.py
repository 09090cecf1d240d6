"""Guessing failures at checkout, counted in PostgreSQL so every replica shares them, and
the blocks announced on `checkout_blocks` (see services/coupons/throttle.py).

Windows are numbered on the database's clock, so replicas agree on them whatever their own
clocks say."""

from projections.db import Connection
from services.coupons.domain.guessing import Count

BLOCKS_CHANNEL = "checkout_blocks"

_COUNT = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now),
bumped AS (
    INSERT INTO checkout_failures AS f (subject, window_no, failures)
    SELECT s.subject, floor(clock.now / $3)::bigint, $2
    FROM unnest($1::text[]) AS s(subject), clock
    ON CONFLICT (subject, window_no) DO UPDATE SET failures = f.failures + excluded.failures
    RETURNING f.subject, f.window_no, f.failures
)
SELECT b.subject, coalesce(p.failures, 0) AS previous, b.failures AS current,
       clock.now - b.window_no * $3 AS elapsed
FROM bumped b CROSS JOIN clock
LEFT JOIN checkout_failures p ON p.subject = b.subject AND p.window_no = b.window_no - 1
"""

_RECENT = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now),
this AS (SELECT floor(clock.now / $1)::bigint AS no, clock.now FROM clock)
SELECT f.subject,
       coalesce(sum(f.failures) FILTER (WHERE f.window_no = this.no - 1), 0)::int AS previous,
       coalesce(sum(f.failures) FILTER (WHERE f.window_no = this.no), 0)::int AS current,
       min(this.now - this.no * $1) AS elapsed
FROM checkout_failures f CROSS JOIN this
WHERE f.window_no >= this.no - 1
GROUP BY f.subject
"""


async def count(
    conn: Connection, subjects: list[str], failures: int, window_s: float
) -> dict[str, Count]:
    """Add `failures` to each subject (sorted by the caller: rows are locked in that order)
    and return each one's count, including them."""
    rows = await conn.fetch(_COUNT, subjects, failures, window_s)
    return {r["subject"]: Count(r["previous"], r["current"], r["elapsed"]) for r in rows}


async def recent(conn: Connection, window_s: float) -> dict[str, Count]:
    """Every subject with failures in the current window or the one before."""
    rows = await conn.fetch(_RECENT, window_s)
    return {r["subject"]: Count(r["previous"], r["current"], r["elapsed"]) for r in rows}


async def forget_old(conn: Connection, window_s: float) -> None:
    """Drop the windows no estimate reads any more."""
    await conn.execute(
        "DELETE FROM checkout_failures"
        " WHERE window_no < floor(extract(epoch FROM clock_timestamp()) / $1)::bigint - 1",
        window_s,
    )


async def announce(conn: Connection, blocks: dict[str, float]) -> None:
    """Tell every replica (and this one) that these subjects wait so many seconds."""
    await conn.execute(
        "SELECT pg_notify($1, b.wait || ' ' || b.subject)"
        " FROM unnest($2::text[], $3::float8[]) AS b(subject, wait)",
        BLOCKS_CHANNEL,
        list(blocks),
        list(blocks.values()),
    )

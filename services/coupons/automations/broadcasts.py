"""Broadcasts: every member of a segment at send time gets the campaign's code, once each.

At `send_at` the runner snapshots the segment's members into runs (one transaction: all or
none), and the sender sends them like an automation's, under the same caps and holdout. A
crash before the snapshot commits leaves the broadcast scheduled (taken again); after it,
the runs are rows the sender resumes. The broadcast is done once no run of it is left to
send. Cancellable until it starts."""

import asyncio
from datetime import UTC, datetime

import asyncpg
import structlog

from projections.db import Connection
from services.coupons.automations.store import RUN_ID_SQL, RUNS_CHANNEL

log = structlog.get_logger(__name__)

RECHECK_S = 1.0
_RUN_ID = RUN_ID_SQL.format(source="b.id", contact="m.contact_id", occurrence="'broadcast'")


class BroadcastRunner:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def run(self) -> None:
        while True:
            async with self._pool.acquire() as conn:
                await start_due(conn, datetime.now(UTC))
                await finish_done(conn)
            await asyncio.sleep(RECHECK_S)


async def start_due(conn: Connection, now: datetime) -> int:
    """Snapshot the members of each broadcast due by `now` into runs; how many started."""
    started = 0
    while True:
        async with conn.transaction():
            found = await conn.fetchrow(
                """SELECT id, definition->>'segment_id' AS segment_id,
                          definition->>'campaign_id' AS campaign_id
                   FROM broadcasts WHERE status = 'scheduled' AND send_at <= $1
                   ORDER BY send_at LIMIT 1 FOR UPDATE SKIP LOCKED""",
                now,
            )
            if found is None:
                return started
            total = await conn.fetchval(
                f"""WITH added AS (
                        INSERT INTO automation_runs (id, source_kind, source_id, source_version,
                            campaign_id, contact_id, occurrence, cause, triggered_at, due_at)
                        SELECT {_RUN_ID}, 'broadcast', b.id, 1, $2, m.contact_id,
                               'broadcast', 'broadcast:' || b.id, $4, $4
                        FROM segment_members m, (SELECT $1::text AS id) AS b
                        WHERE m.segment_id = $3
                        ON CONFLICT DO NOTHING RETURNING 1)
                    SELECT count(*) FROM added""",
                found["id"],
                found["campaign_id"],
                found["segment_id"],
                now,
            )
            await conn.execute(
                """UPDATE broadcasts SET status = 'running', total = $2, started_at = $3
                   WHERE id = $1""",
                found["id"],
                total,
                now,
            )
            await conn.execute("SELECT pg_notify($1, '')", RUNS_CHANNEL)
        log.info("broadcast.started", broadcast=found["id"], contacts=total)
        started += 1


async def finish_done(conn: Connection) -> None:
    await conn.execute(
        """UPDATE broadcasts b SET status = 'done', finished_at = now()
           WHERE status = 'running' AND NOT EXISTS (
               SELECT 1 FROM automation_runs r
               WHERE r.source_id = b.id AND r.status IN ('scheduled', 'sending'))"""
    )

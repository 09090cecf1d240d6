"""The timer loop: re-evaluates a contact at the second its membership can change by time
alone ("trial ends within 3 days" becomes true at a moment no event marks).

Each contact has at most one durable timer (`contact_timers`, written by `store.settle`). The
loop sleeps until the earliest due one, woken early by NOTIFY on `contact_timers` when a
writer sets an earlier one; it claims due timers with `FOR UPDATE SKIP LOCKED` (replicas
share the work), locks their profiles the same way (a profile another writer holds is left
to that writer, which reschedules it), reconciles at the current second and reschedules. No
periodic recompute of everyone; timers survive restarts, being rows."""

import time

import asyncpg
import structlog

from services.coupons.contacts import store
from services.coupons.contacts.reactions import Reaction
from services.coupons.store.woken import run_woken

log = structlog.get_logger(__name__)

BATCH = 1000
RECHECK_S = 5.0


class TimerLoop:
    def __init__(
        self, database_url: str, pool: asyncpg.Pool, react: Reaction | None = None
    ) -> None:
        self._database_url = database_url
        self._pool = pool
        self._react = react

    async def run(self) -> None:
        async def step() -> bool:
            return await self.fire_due() == BATCH

        await run_woken(self._database_url, store.TIMERS_CHANNEL, step, self._seconds_to_next)

    async def _seconds_to_next(self) -> float:
        async with self._pool.acquire() as conn:
            due = await conn.fetchval("SELECT min(due_at) FROM contact_timers")
        return RECHECK_S if due is None else min(RECHECK_S, max(0.0, due - time.time()))

    async def fire_due(self) -> int:
        """Fire the timers due by now (at most BATCH); how many were claimed."""
        now = int(time.time())
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT contact_id, due_at FROM contact_timers WHERE due_at <= $1
                   ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
                now,
                BATCH,
            )
            if not rows:
                return 0
            profiles = await store.lock_profiles(
                conn, [r["contact_id"] for r in rows], skip_locked=True
            )
            causes = {r["contact_id"]: f"timer:{r['due_at']}" for r in rows}
            segments = await store.live_segments(conn)
            written = await store.settle(conn, profiles, segments, causes, now, react=self._react)
        late = now - min(r["due_at"] for r in rows)
        log.info("contacts.timers_fired", timers=len(rows), messages=written, late_s=late)
        return len(rows)

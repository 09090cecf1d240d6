"""Throttle code guessing at checkout, per shopper and per key, the same on every replica.

- **Before deciding**, a checkout call is refused (`429 too_many_failures`, `Retry-After`)
  if its contact, its shopper's address or its API key is blocked. That is a lookup in this
  replica's in-memory block list; with no block anywhere it is one truth test.
- **After a guessing refusal** (`domain.guessing.GUESSES`; rare), the failure is counted in
  PostgreSQL (`checkout_failures`, one UPSERT for all the call's subjects) and the counts
  come back. A failure past a subject's allowance has its answer withheld (429 instead), so
  a guesser learns no more answers than the limit even from replicas that have not heard of
  the block yet. A subject whose allowance is used up is announced on `checkout_blocks`
  (`pg_notify`): every replica, this one included, adds it to its block list until the
  count has faded.
- Each replica LISTENs on its own connection, and reloads the blocks from the counts when it
  (re)connects, so a replica started or reconnected late misses none.
"""

import asyncio
import time
from collections.abc import Callable

import asyncpg
import structlog

from projections.db import Connection
from services.coupons.domain.guessing import Limits, over, subjects_of, wait_s
from services.coupons.store import checkout_failures
from services.coupons.store.checkout_failures import BLOCKS_CHANNEL

log = structlog.get_logger(__name__)

PRUNE_ABOVE = 10_000  # blocks held before expired ones are dropped on the next insert


class Throttle:
    def __init__(
        self,
        limits: Limits,
        pool: asyncpg.Pool,
        database_url: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._window_s = limits.contact.window_s
        self._pool = pool
        self._database_url = database_url
        self._clock = clock
        self._blocked: dict[str, float] = {}  # subject -> deadline on `clock`
        self._forget_at = 0.0

    def wait_s(self, key: str, contact_id: str, shopper_address: str | None) -> float | None:
        """Seconds the caller must wait before this call may be decided, or None."""
        if not self._blocked:  # the usual case: nobody is blocked anywhere
            return None
        now = self._clock()
        longest = 0.0
        for subject in subjects_of(key, contact_id, shopper_address):
            deadline = self._blocked.get(subject)
            if deadline is None:
                continue
            if deadline <= now:
                del self._blocked[subject]
            else:
                longest = max(longest, deadline - now)
        return longest or None

    async def failed(
        self, key: str, contact_id: str, shopper_address: str | None, guesses: int
    ) -> float | None:
        """Count `guesses` failures; the seconds to wait if this call went past an allowance
        (its answer is then withheld), else None."""
        subjects = subjects_of(key, contact_id, shopper_address)
        async with self._pool.acquire() as conn:
            counts = await checkout_failures.count(conn, subjects, guesses, self._window_s)
            blocks = {s: wait_s(c, self._limits.of(s)) for s, c in counts.items()}
            blocks = {s: w for s, w in blocks.items() if w > 0}
            if blocks:
                self._block(blocks)
                await checkout_failures.announce(conn, blocks)
                log.info("checkout.throttled", subjects=len(blocks), wait_s=max(blocks.values()))
            await self._forget_old(conn)
        if any(over(c, self._limits.of(s)) for s, c in counts.items()):
            return max(blocks.values(), default=1.0)
        return None

    async def run(self) -> None:
        """Hear the blocks other replicas announce, for as long as the connection lasts
        (run under `Supervised`, which reconnects)."""
        conn = await asyncpg.connect(self._database_url)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(BLOCKS_CHANNEL, self._on_announced)
            await self._reload(conn)  # after LISTEN: nothing announced meanwhile is missed
            await lost.wait()
            raise ConnectionError("the connection listening for checkout blocks was lost")
        finally:
            await conn.close()

    def _on_announced(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        wait, _, subject = payload.partition(" ")
        self._block({subject: float(wait)})

    async def _reload(self, conn: Connection) -> None:
        counts = await checkout_failures.recent(conn, self._window_s)
        blocks = {s: wait_s(c, self._limits.of(s)) for s, c in counts.items()}
        self._block({s: w for s, w in blocks.items() if w > 0})

    def _block(self, waits: dict[str, float]) -> None:
        now = self._clock()
        if len(self._blocked) > PRUNE_ABOVE:
            self._blocked = {s: d for s, d in self._blocked.items() if d > now}
        for subject, wait in waits.items():
            self._blocked[subject] = max(self._blocked.get(subject, 0.0), now + wait)

    async def _forget_old(self, conn: Connection) -> None:
        """Drop counts no estimate reads any more: at most once a window per replica."""
        now = self._clock()
        if now >= self._forget_at:
            self._forget_at = now + self._window_s
            await checkout_failures.forget_old(conn, self._window_s)

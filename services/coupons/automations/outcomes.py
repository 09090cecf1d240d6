"""The sender's outcomes (`sent`, or refused by the campaign's decider), written to
`automation_runs` off the path of the coupon: the `coupon.issued.v1` record is out once the
decider commits; the row only records it. Outcomes answered while a write is under way are
written together by the next one, so the writes keep up at any rate with one statement each.

A run whose outcome is lost with its process (a crash before the write) stays `sending` and
is sent again after `sender.STALE_S` with the same idempotency key: its decider answers with
the first outcome, which is written then."""

import asyncio

import asyncpg

Outcome = tuple[str, str, str | None, str | None]
"""(run id, status, reason, detail)."""


class Outcomes:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: list[Outcome] = []
        self._added = asyncio.Event()

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._added.set()

    async def run(self) -> None:
        """Forever: write what was answered since the last write, in one statement."""
        while True:
            await self._added.wait()
            self._added.clear()
            written, self._pending = self._pending, []
            await write(self._pool, written)


async def write(pool: asyncpg.Pool, outcomes: list[Outcome]) -> None:
    """Record the outcomes of runs still `sending` (one already recorded is left alone)."""
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE automation_runs AS a SET status = d.status, reason = d.reason,
                   detail = d.detail, decided_at = now()
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                    AS d(id, status, reason, detail)
               WHERE a.id = d.id AND a.status = 'sending'""",
            *columns(outcomes),
        )


def columns(
    rows: list[Outcome],
) -> tuple[list[str], list[str], list[str | None], list[str | None]]:
    """(id, status, reason, detail) rows as four columns, for one `unnest` statement: many
    updates in one round trip instead of one statement each."""
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )

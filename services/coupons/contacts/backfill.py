"""Backfill: evaluates a new or changed segment over the existing profiles, in pages of
contact ids, as a background job with visible progress (`segment_backfills`: done of total).

Each page's profiles are locked in id order (like every writer), the segment's condition is
evaluated over them in PostgreSQL (contacts/condition_sql.py; the rows or conditions outside
its subset in Python), and who entered or left is written with the outbox messages and the
job's cursor in one transaction: a crash resumes at the page after the last committed one. A
contact's one timer is only brought forward to this segment's next change (a timer that
fires early re-evaluates every segment and sets the right one). A job whose segment moved to
a newer version, or was archived, is dropped as superseded."""

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog

from projections.db import Connection
from services.coupons.contacts import store
from services.coupons.contacts.condition_sql import translate
from services.coupons.contacts.membership import Segment
from services.coupons.contacts.profile import evaluation_data

log = structlog.get_logger(__name__)

PAGE = 10_000
IDLE_S = 1.0


@dataclass(frozen=True)
class Answer:
    inside: bool
    due: int | None
    """The next second time alone can change this segment's answer (None: never)."""


async def start(conn: Connection, segment_id: str, version: int) -> None:
    """Queue the backfill of `segment_id` at `version`, inside the caller's transaction."""
    await conn.execute(
        """INSERT INTO segment_backfills (segment_id, version, total)
           SELECT $1, $2, count(*) FROM contact_profiles ON CONFLICT DO NOTHING""",
        segment_id,
        version,
    )


class BackfillRunner:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def run(self) -> None:
        while True:
            if not await self.step():
                await asyncio.sleep(IDLE_S)

    async def step(self) -> bool:
        """Backfill one page of the oldest unfinished job; False when there is none."""
        async with self._pool.acquire() as conn, conn.transaction():
            job = await conn.fetchrow(
                """SELECT b.segment_id, b.version, b.after, s.version AS current, s.status
                   FROM segment_backfills b JOIN segments s ON s.id = b.segment_id
                   WHERE NOT b.finished ORDER BY b.started_at LIMIT 1
                   FOR UPDATE OF b SKIP LOCKED"""
            )
            if job is None:
                return False
            key = (job["segment_id"], job["version"])
            segment = (await store.live_segments(conn)).get(key[0])
            if segment is None or (job["current"], job["status"]) != (key[1], "active"):
                await _finish(conn, key)
                return True
            ids = [
                r["contact_id"]
                for r in await conn.fetch(
                    """SELECT contact_id FROM contact_profiles WHERE contact_id > $1
                       ORDER BY contact_id LIMIT $2 FOR UPDATE""",
                    job["after"],
                    PAGE,
                )
            ]
            if not ids:
                await _finish(conn, key)
                log.info("contacts.backfilled", segment_id=key[0], version=key[1])
                return True
            now = int(time.time())
            answers = await evaluate(conn, segment, ids, now)
            await write_page(conn, segment, answers, f"backfill:{key[0]}:{key[1]}", now)
            await conn.execute(
                """UPDATE segment_backfills SET after = $3, done = done + $4, updated_at = now()
                   WHERE segment_id = $1 AND version = $2""",
                *key,
                ids[-1],
                len(ids),
            )
        return True


async def evaluate(
    conn: Connection, segment: Segment, ids: list[str], now: int
) -> dict[str, Answer]:
    """`segment`'s answer for each (locked) contact of `ids` (in id order) at `now`."""
    sql = translate(segment.condition.tree, now, 3, timers=True)
    rows = await conn.fetch(
        f"""SELECT p.contact_id, ({sql.inside}) AS inside, ({sql.due}) AS due
            FROM contact_profiles p{sql.lateral}
            WHERE p.contact_id >= $1 AND p.contact_id <= $2""",
        ids[0],
        ids[-1],
        *sql.params,
    )
    locked = set(ids)  # rows created since the lock are the processor's to evaluate
    answers = {
        r["contact_id"]: Answer(r["inside"], r["due"])
        for r in rows
        if r["contact_id"] in locked and r["inside"] is not None and r["due"] != -1
    }
    in_python = [i for i in ids if i not in answers]
    if in_python:
        for r in await conn.fetch(
            """SELECT contact_id, profile::text FROM contact_profiles
               WHERE contact_id = ANY($1::text[])""",
            in_python,
        ):
            data = evaluation_data(store.from_json(r["contact_id"], r["profile"]), now)
            answers[r["contact_id"]] = Answer(
                segment.condition.matches(data), segment.condition.next_change(data)
            )
    return answers


async def write_page(
    conn: Connection, segment: Segment, answers: Mapping[str, Answer], cause: str, now: int
) -> None:
    """Memberships, entered/left messages and timers for one page's answers."""
    ids = sorted(answers)
    held = {
        r["contact_id"]
        for r in await conn.fetch(
            """SELECT contact_id FROM segment_members
               WHERE segment_id = $1 AND contact_id >= $2 AND contact_id <= $3""",
            segment.id,
            ids[0],
            ids[-1],
        )
    }
    entered = [c for c in ids if answers[c].inside and c not in held]
    left = [c for c in ids if not answers[c].inside and c in held]
    at = datetime.fromtimestamp(now, UTC)
    if entered:
        await conn.execute(
            """INSERT INTO segment_members (segment_id, contact_id, version, since)
               SELECT $1, unnest($2::text[]), $3, $4 ON CONFLICT DO NOTHING""",
            segment.id,
            entered,
            segment.version,
            at,
        )
    if left:
        await conn.execute(
            "DELETE FROM segment_members WHERE segment_id = $1 AND contact_id = ANY($2::text[])",
            segment.id,
            left,
        )
    if entered or left:
        await _announce(conn, segment, entered, left, cause, at)
    due = [(c, a.due) for c, a in answers.items() if a.due is not None]
    if due:
        await conn.execute(
            """INSERT INTO contact_timers (contact_id, due_at)
               SELECT * FROM unnest($1::text[], $2::bigint[])
               ON CONFLICT (contact_id)
               DO UPDATE SET due_at = least(contact_timers.due_at, excluded.due_at)""",
            [c for c, _ in due],
            [d for _, d in due],
        )
        await conn.execute(
            "SELECT pg_notify($1, $2)", store.TIMERS_CHANNEL, str(min(d for _, d in due))
        )


async def _announce(
    conn: Connection,
    segment: Segment,
    entered: list[str],
    left: list[str],
    cause: str,
    at: datetime,
) -> None:
    """The entered/left messages into the outbox: `store._message`'s fields, built
    in SQL (a page can hold 10,000 of them; their ids are the same stable uuid5)."""
    kinds = ["entered"] * len(entered) + ["left"] * len(left)
    contacts = entered + left
    await conn.execute(
        """INSERT INTO segment_outbox (contact_id, message)
           SELECT c, jsonb_build_object('id', i, 'type', 'contact.' || k || '_segment.v1',
                      'contact_id', c, 'segment_id', $4::text, 'segment_version', $5::int,
                      'cause', $6::text, 'at', $7::text)
           FROM unnest($1::text[], $2::text[], $3::text[]) AS u(c, k, i)""",
        contacts,
        kinds,
        [
            store.message_id(f"{k}/{segment.id}/{segment.version}/{c}/{cause}")
            for k, c in zip(kinds, contacts, strict=True)
        ],
        segment.id,
        max(segment.version, 1),
        cause,
        at.isoformat().replace("+00:00", "Z"),
    )
    await conn.execute("SELECT pg_notify($1, '')", store.OUTBOX_CHANNEL)


async def _finish(conn: Connection, key: tuple[str, int]) -> None:
    await conn.execute(
        """UPDATE segment_backfills SET finished = true, updated_at = now()
           WHERE segment_id = $1 AND version = $2""",
        *key,
    )

"""The contacts' rows in PostgreSQL: profiles, memberships, timers and the outbox, written
together by `settle` inside the caller's transaction. Shared by the contacts processor (on
events), the timer loop (on due timers) and the backfill runner."""

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL

from pydantic_core import from_json as parse_json
from pydantic_core import to_json as dump_json

from contracts.contacts import ContactEvent
from projections.db import Connection
from services.coupons.contacts.conditions import compile_condition
from services.coupons.contacts.membership import Reconciled, Segment, reconcile, segment_reads
from services.coupons.contacts.profile import CouponFacts, Fact, Profile, Trait, comparable
from services.coupons.contacts.reactions import Change, Reaction

TIMERS_CHANNEL = "contact_timers"
OUTBOX_CHANNEL = "segment_outbox"
_compiled: dict[tuple[str, int], Segment] = {}


def to_json(profile: Profile) -> str:
    """The profile as stored (`dataclasses.asdict` deep-copies every value: 4 times slower;
    pydantic_core's Rust encoder is 3 times faster than `json.dumps`). `epochs` holds the epoch
    seconds of each text trait read as a timestamp, so that SQL compares it as conditions do
    (contacts/condition_sql.py) without parsing text."""
    c = profile.coupons
    epochs = {}
    for name, trait in profile.traits.items():
        if isinstance(trait.value, str) and isinstance(at := comparable(trait.value), int):
            epochs[name] = at
    return dump_json(
        {
            "email": profile.email,
            "email_set_at": profile.email_set_at,
            "traits": {
                n: {"value": t.value, "set_at": t.set_at, "set_by": t.set_by}
                for n, t in profile.traits.items()
            },
            "epochs": epochs,
            "first_seen": profile.first_seen,
            "last_seen": profile.last_seen,
            "facts": {
                k: {"label": f.label, "count": f.count, "last_at": f.last_at, "days": f.days}
                for k, f in profile.facts.items()
            },
            "coupons": {
                "received": c.received,
                "redeemed": c.redeemed,
                "last_redeemed_at": c.last_redeemed_at,
                "discount": c.discount,
                "revenue": c.revenue,
                "campaigns": list(c.campaigns),
            },
        }
    ).decode()


def from_json(contact_id: str, text: str | None) -> Profile:
    if not text or text == "{}":  # a contact just created by lock_profiles
        return Profile(contact_id)
    raw = parse_json(text)
    return Profile(
        contact_id=contact_id,
        email=raw.get("email"),
        email_set_at=raw.get("email_set_at", 0),
        traits={n: Trait(**t) for n, t in raw.get("traits", {}).items()},
        first_seen=raw.get("first_seen"),
        last_seen=raw.get("last_seen"),
        facts={
            k: Fact(
                f["label"], f["count"], f["last_at"], tuple((d, c) for d, c in f.get("days", ()))
            )
            for k, f in raw.get("facts", {}).items()
        },
        coupons=CouponFacts(
            **{
                **raw.get("coupons", {}),
                "campaigns": tuple(raw.get("coupons", {}).get("campaigns", ())),
            }
        ),
    )


async def live_segments(conn: Connection) -> dict[str, Segment]:
    """The active live segments, compiled once per version."""
    rows = await conn.fetch(
        "SELECT id, version, condition FROM segments WHERE kind = 'live' AND status = 'active'"
    )
    found = {}
    for row in rows:
        key = (row["id"], row["version"])
        if key not in _compiled:
            if len(_compiled) > 10_000:
                _compiled.clear()
            condition = compile_condition(json.loads(row["condition"]))
            _compiled[key] = Segment(row["id"], row["version"], condition)
        found[row["id"]] = _compiled[key]
    return found


async def lock_profiles(
    conn: Connection, contact_ids: Iterable[str], *, skip_locked: bool = False, create: bool = True
) -> dict[str, Profile]:
    """Lock (creating when new, with `create`) the profile rows of `contact_ids`, in id order
    (no deadlock between writers); with `skip_locked`, those another writer holds are left
    out; without `create`, the new ones (`create_profiles` writes them once folded)."""
    ids = sorted(set(contact_ids))
    if create and not skip_locked:
        await conn.execute(
            """INSERT INTO contact_profiles (contact_id, profile)
               SELECT unnest($1::text[]), '{}' ON CONFLICT DO NOTHING""",
            ids,
        )
    rows = await conn.fetch(
        f"""SELECT contact_id, profile::text FROM contact_profiles
            WHERE contact_id = ANY($1::text[]) ORDER BY contact_id
            FOR UPDATE{" SKIP LOCKED" if skip_locked else ""}""",
        ids,
    )
    return {r["contact_id"]: from_json(r["contact_id"], r["profile"]) for r in rows}


async def create_profiles(conn: Connection, profiles: Mapping[str, Profile]) -> set[str]:
    """Insert the profiles of new contacts as folded (one write of each row, instead of a
    placeholder then an update); the ids another writer created meanwhile, not inserted:
    the caller locks those (`lock_profiles`) and folds again on what is stored."""
    rows = await conn.fetch(
        """INSERT INTO contact_profiles (contact_id, profile, email)
           SELECT c, p::jsonb, e FROM unnest($1::text[], $2::text[], $3::text[]) AS u(c, p, e)
           ORDER BY c ON CONFLICT DO NOTHING RETURNING contact_id""",
        list(profiles),
        [to_json(p) for p in profiles.values()],
        [p.email for p in profiles.values()],
    )
    return set(profiles) - {r["contact_id"] for r in rows}


async def save_profiles(conn: Connection, profiles: Mapping[str, Profile]) -> None:
    """Write locked `profiles` back: one statement (executemany costs a protocol round a row)."""
    if not profiles:
        return
    await conn.execute(
        """UPDATE contact_profiles p
           SET profile = u.profile::jsonb, email = u.email, updated_at = now()
           FROM unnest($1::text[], $2::text[], $3::text[]) AS u(contact_id, profile, email)
           WHERE p.contact_id = u.contact_id""",
        list(profiles),
        [to_json(p) for p in profiles.values()],
        [p.email for p in profiles.values()],
    )


async def held(conn: Connection, contact_ids: Iterable[str]) -> dict[str, frozenset[str]]:
    rows = await conn.fetch(
        """SELECT contact_id, array_agg(segment_id) AS segments FROM segment_members
           WHERE contact_id = ANY($1::text[]) GROUP BY contact_id""",
        list(contact_ids),
    )
    return {r["contact_id"]: frozenset(r["segments"]) for r in rows}


async def settle(
    conn: Connection,
    profiles: Mapping[str, Profile],
    segments: Mapping[str, Segment],
    causes: Mapping[str, str],
    now: int,
    *,
    react: Reaction | None = None,
    events: Mapping[str, Sequence[ContactEvent]] | None = None,
    touched: Mapping[str, frozenset[str] | None] | None = None,
) -> int:
    """Reconcile each locked profile at `now` (saved already when it changed: `save_profiles`,
    `create_profiles`), write memberships, timers and the outbox, and let `react` see the
    change (the `events` applied to each contact); the number of entered/left messages
    written. `touched`: per contact, the inputs its events changed (membership.reconcile);
    absent or None, every segment."""
    holding = await held(conn, profiles) if segments else {}  # one not live is left alone
    changed = touched or {}
    reads = segment_reads(segments)
    results = {
        cid: reconcile(p, segments, holding.get(cid, frozenset()), now, changed.get(cid), reads)
        for cid, p in profiles.items()
    }
    if react is not None:
        changes = [
            Change(
                profile=profiles[cid],
                events=(events or {}).get(cid, ()),
                entered=tuple(s.id for s in r.entered),
                left=r.left,
                cause=causes[cid],
            )
            for cid, r in results.items()
        ]
        wanted = await react(conn, changes, now)
        results = {
            cid: r if cid not in wanted else replace(r, next_due=_earliest(r.next_due, wanted[cid]))
            for cid, r in results.items()
        }
    return await _write(conn, results, segments, causes, now)


def _earliest(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


_WRITE = """
WITH joined AS (
         INSERT INTO segment_members (segment_id, contact_id, version, since)
         SELECT j ->> 0, j ->> 1, (j ->> 2)::int, $2
         FROM jsonb_array_elements($1::text::jsonb) AS j
         ON CONFLICT DO NOTHING),
     left_ AS (
         DELETE FROM segment_members m USING unnest($3::text[], $4::text[]) AS l(s, c)
         WHERE m.segment_id = l.s AND m.contact_id = l.c),
     told AS (
         INSERT INTO segment_outbox (contact_id, message)
         SELECT m ->> 'contact_id', m FROM jsonb_array_elements($5::text::jsonb)
         WITH ORDINALITY AS o(m, i) ORDER BY i),
     due AS (
         INSERT INTO contact_timers (contact_id, due_at)
         SELECT * FROM unnest($6::text[], $7::bigint[])
         ON CONFLICT (contact_id) DO UPDATE SET due_at = excluded.due_at),
     idle AS (
         DELETE FROM contact_timers WHERE contact_id = ANY($8::text[]))
SELECT (SELECT pg_notify($9, '') WHERE $5::text <> '[]'),
       (SELECT pg_notify($10, min(d)::text) FROM unnest($7::bigint[]) AS d
        HAVING count(*) > 0)"""
"""Memberships, outbox, timers and their wake-ups in ONE statement: under load each round
trip to PostgreSQL waits 3-4 ms (median, 10 ms p90: `bench/automations.py`, session 19),
and these were up to seven of the contacts' transaction. Its parts touch disjoint rows (a
contact cannot enter and leave one segment, nor be due and idle, in one settle), so running
them in one snapshot is the same as one after another. Messages go to the outbox in their
order (its `seq` is the publishing order), as one JSON array parameter: arrays of text cost
asyncpg an abstract-class check per element."""


async def _write(
    conn: Connection,
    results: Mapping[str, Reconciled],
    segments: Mapping[str, Segment],
    causes: Mapping[str, str],
    now: int,
) -> int:
    at = datetime.fromtimestamp(now, UTC)
    joins = [(s.id, cid, s.version) for cid, r in results.items() for s in r.entered]
    leaves = [(sid, cid) for cid, r in results.items() for sid in r.left]
    messages = [
        _message("entered", cid, s.id, s.version, causes[cid], at)
        for cid, r in results.items()
        for s in r.entered
    ] + [
        _message("left", cid, sid, segments[sid].version, causes[cid], at)
        for cid, r in results.items()
        for sid in r.left
    ]
    due = [(cid, r.next_due) for cid, r in results.items() if r.next_due is not None]
    await _write_rows(
        conn,
        at,
        joins=joins,
        leaves=leaves,
        messages=messages,
        due=due,
        idle=[cid for cid, r in results.items() if r.next_due is None],
    )
    return len(messages)


async def _write_rows(
    conn: Connection,
    at: datetime,
    *,
    joins: Sequence[tuple[str, str, int]] = (),
    leaves: Sequence[tuple[str, str]] = (),
    messages: Sequence[dict[str, Any]] = (),
    due: Sequence[tuple[str, int]] = (),
    idle: Sequence[str] = (),
) -> None:
    """`_WRITE`: memberships joined (segment, contact, version) and left (segment, contact),
    outbox messages, timers due (contact, epoch second) and contacts idle."""
    await conn.execute(
        _WRITE,
        dump_json(joins).decode(),
        at,
        [s for s, _ in leaves],
        [c for _, c in leaves],
        dump_json(messages).decode(),
        [c for c, _ in due],
        [d for _, d in due],
        list(idle),
        OUTBOX_CHANNEL,
        TIMERS_CHANNEL,
    )


_NAMESPACE = NAMESPACE_URL.bytes


@lru_cache(maxsize=8)
def _text(at: datetime) -> str:
    """As pydantic writes it (one instant for a whole poll: formatted once)."""
    return at.isoformat().replace("+00:00", "Z")


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def message_id(name: str) -> str:
    """`str(uuid.uuid5(NAMESPACE_URL, name))` without building UUID objects (a third of the
    cost of writing a message): the SHA-1's first 16 bytes, version nibble 5, variant 10."""
    h = hashlib.sha1(_NAMESPACE + name.encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def _message(
    kind: str, contact_id: str, segment_id: str, version: int, cause: str, at: datetime
) -> dict[str, Any]:
    """A `MembershipChanged` as JSON-ready data (built from values already bounded: the
    contract's validation is left out of this hot path; a unit test holds them equal)."""
    return {
        "id": message_id(f"{kind}/{segment_id}/{version}/{contact_id}/{cause}"),
        "type": f"contact.{kind}_segment.v1",
        "contact_id": contact_id,
        "segment_id": segment_id,
        "segment_version": max(version, 1),
        "cause": cause,
        "at": _text(at),
    }


async def add_static_members(
    conn: Connection, segment_id: str, version: int, contact_ids: list[str], cause: str, now: int
) -> int:
    """Add uploaded contacts to a static segment, with an entered message for each one that
    was not a member; how many were added."""
    at = datetime.fromtimestamp(now, UTC)
    added = [
        r["contact_id"]
        for r in await conn.fetch(
            """INSERT INTO segment_members (segment_id, contact_id, version, since)
               SELECT $1, unnest($2::text[]), $3, $4 ON CONFLICT DO NOTHING
               RETURNING contact_id""",
            segment_id,
            sorted(set(contact_ids)),
            version,
            at,
        )
    ]
    if added:
        entered = [_message("entered", c, segment_id, version, cause, at) for c in added]
        await _write_rows(conn, at, messages=entered)
    return len(added)

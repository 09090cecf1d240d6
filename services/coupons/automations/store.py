"""The automations' rows in PostgreSQL: definitions, runs and conversions. Runs are written
by `record_fired` inside the contacts' settle transaction (exactly once per occurrence: the
row is unique) and moved on by the sender (services.coupons.automations.sender)."""

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from contracts.automations import AutomationDefinition, BroadcastRequest
from contracts.contacts import ContactEvent
from projections.db import Connection
from services.coupons.automations.automation import Automation
from services.coupons.automations.triggers import Fired

RUNS_CHANNEL = "automation_runs"
_compiled: dict[tuple[str, int], Automation] = {}


def run_id(source_id: str, contact_id: str, occurrence: str) -> str:
    """A run's id, also its distribution's id: the same in SQL (`RUN_ID_SQL`) and here."""
    key = f"{source_id}\x1f{contact_id}\x1f{occurrence}".encode()
    return str(UUID(hashlib.md5(key, usedforsecurity=False).hexdigest()))


RUN_ID_SQL = "md5({source} || chr(31) || {contact} || chr(31) || {occurrence})::uuid::text"


def automation_of(row: Any) -> Automation:
    """An automation row as the domain sees it, compiled once per version."""
    key = (row["id"], row["version"])
    found = _compiled.get(key)
    if found is None or found.status != row["status"]:
        if len(_compiled) > 10_000:
            _compiled.clear()
        definition = AutomationDefinition.model_validate_json(row["definition"])
        found = Automation.of(row["id"], row["version"], row["status"], definition)
        _compiled[key] = found
    return found


async def active(conn: Connection) -> tuple[list[Automation], set[str]]:
    """The active automations, and the contact event types some automation or broadcast
    counts as a conversion: one round trip (the contacts' transaction waits on each)."""
    rows = await conn.fetch(
        """WITH types AS (
               SELECT array(SELECT definition->'conversion'->>'event_type' FROM automations
                            UNION SELECT definition->'conversion'->>'event_type' FROM broadcasts)
                      AS types)
           SELECT types, a.id, a.version, a.status, a.definition::text AS definition
           FROM types LEFT JOIN automations a ON a.status = 'active'"""
    )
    types = {t for t in rows[0]["types"] if t}
    return [automation_of(r) for r in rows if r["id"] is not None], types


async def sources(
    conn: Connection, ids: Iterable[str]
) -> tuple[dict[str, Automation], dict[str, dict[str, Any]]]:
    """The automations and the broadcasts among `ids`, in one round trip (the sender's claim
    waits on each): automations by id, and broadcasts by id as their status and definition."""
    rows = await conn.fetch(
        """SELECT 'automation' AS kind, id, version, status, definition::text AS definition
           FROM automations WHERE id = ANY($1::text[])
           UNION ALL
           SELECT 'broadcast', id, 1, status, definition::text FROM broadcasts
           WHERE id = ANY($1::text[])""",
        list(set(ids)),
    )
    automations = {r["id"]: automation_of(r) for r in rows if r["kind"] == "automation"}
    broadcasts = {
        r["id"]: {
            "status": r["status"],
            "definition": BroadcastRequest.model_validate_json(r["definition"]),
        }
        for r in rows
        if r["kind"] == "broadcast"
    }
    return automations, broadcasts


async def record_fired(conn: Connection, fired: Sequence[Fired], now: int) -> int:
    """Record a run per fired trigger (an occurrence already recorded is skipped), refused
    `condition_false` at once when the condition did not hold as it fired; wake the sender
    when any is new. How many were new."""
    if not fired:
        return 0
    at = datetime.fromtimestamp(now, UTC)
    rows = [
        (
            run_id(f.automation.id, f.contact_id, f.occurrence),
            f.automation.id,
            f.automation.version,
            f.automation.definition.campaign_id,
            f.contact_id,
            f.occurrence,
            f.cause,
            at,
            at + timedelta(seconds=f.automation.definition.delay_s),
            "scheduled" if f.holds else "refused",
            None if f.holds else "condition_false",
            None if f.holds else "the condition did not hold when it fired",
            None if f.holds else at,
        )
        for f in fired
    ]
    new = await conn.fetchval(
        """WITH added AS (
               INSERT INTO automation_runs (id, source_kind, source_id, source_version,
                   campaign_id, contact_id, occurrence, cause, triggered_at, due_at, status,
                   reason, detail, decided_at, created_at)
               SELECT r.id, 'automation', r.source_id, r.version, r.campaign_id, r.contact_id,
                      r.occurrence, r.cause, r.triggered_at, r.due_at, r.status, r.reason,
                      r.detail, r.decided_at, clock_timestamp()
               FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[],
                           $10::text[], $11::text[], $12::text[], $13::timestamptz[])
                    AS r(id, source_id, version, campaign_id, contact_id, occurrence, cause,
                         triggered_at, due_at, status, reason, detail, decided_at)
               ON CONFLICT DO NOTHING RETURNING 1),
           counted AS (SELECT count(*) AS n FROM added)
           SELECT n, (SELECT pg_notify($14, '') WHERE n > 0) FROM counted""",
        *(list(column) for column in zip(*rows, strict=True)),
        RUNS_CHANNEL,
    )  # the notification in the same statement: one round trip less in the contacts' poll
    return int(new)


async def record_conversions(
    conn: Connection, events: Sequence[ContactEvent], types: set[str]
) -> None:
    """Keep the events that count as conversions (`properties.amount`, an integer, is their
    value in minor units)."""
    kept = [e for e in events if e.type in types]
    if not kept:
        return
    await conn.executemany(
        """INSERT INTO contact_conversions (event_id, contact_id, event_type, occurred_at, amount)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        [(e.id, e.contact_id, e.type, e.occurred_at, _amount(e)) for e in kept],
    )


def _amount(event: ContactEvent) -> int:
    value = event.properties.get("amount")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def history(conn: Connection, contact_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Why this contact got (or did not get) a coupon: every run, newest first, with the
    code it was given."""
    rows = await conn.fetch(
        """SELECT r.id, r.source_kind, r.source_id, r.source_version, r.campaign_id,
                  r.occurrence, r.cause, r.triggered_at, r.due_at, r.status, r.reason,
                  r.detail, r.decided_at, d.code, d.channel, d.source_ref
           FROM automation_runs r LEFT JOIN distributions d ON d.distribution_id = r.id
           WHERE r.contact_id = $1 ORDER BY r.triggered_at DESC, r.id LIMIT $2""",
        contact_id,
        limit,
    )
    return [dict(r) for r in rows]


def definition_json(definition: AutomationDefinition | BroadcastRequest) -> str:
    return json.dumps(definition.model_dump(mode="json"))

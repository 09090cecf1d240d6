"""The campaigns read model: what `GET /v1/campaigns` serves."""

import json
from typing import Any

import asyncpg

from contracts.envelope import Envelope
from contracts.events import CampaignDefined, CommandRejected, Event
from projections.db import Connection

NAME = "campaigns"


async def apply(conn: Connection, envelope: Envelope[Event]) -> None:
    match envelope.data:
        case CampaignDefined() as event:
            await conn.execute(
                """INSERT INTO campaigns
                       (id, name, discount, defined_at, defined_by, correlation_id, event_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (id) DO NOTHING""",
                event.campaign_id,
                event.name,
                event.discount.model_dump_json(),
                envelope.occurred_at,
                envelope.actor,
                envelope.correlation_id,
                envelope.id,
            )
        case CommandRejected():
            pass


COLUMNS = "id, name, discount, defined_at, defined_by"


def _row(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    row["discount"] = json.loads(row["discount"])
    return row


async def get(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    record = await conn.fetchrow(f"SELECT {COLUMNS} FROM campaigns WHERE id = $1", campaign_id)
    return None if record is None else _row(record)


async def page(conn: Connection, limit: int, after: tuple[Any, str] | None) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated by (defined_at, id)."""
    if after is None:
        records = await conn.fetch(
            f"SELECT {COLUMNS} FROM campaigns ORDER BY defined_at DESC, id DESC LIMIT $1", limit
        )
    else:
        records = await conn.fetch(
            f"""SELECT {COLUMNS} FROM campaigns WHERE (defined_at, id) < ($2, $3)
                ORDER BY defined_at DESC, id DESC LIMIT $1""",
            limit,
            *after,
        )
    return [_row(r) for r in records]

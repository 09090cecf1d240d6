"""The code-stock keeper: when a campaign's unique codes run low (`CodesLow` in the event
log, recorded by the decider at `limits.codes_low_at`) and the campaign tops up
(`limits.codes_top_up`), start a code batch of that many codes with the pattern of the
campaign's last batch; the code-batch runner generates them.

Exactly once: a consumer whose offsets are stored with what it writes (`OffsetConsumer`),
and the batch's id derives from the event's, so a replay starts nothing twice. Automations
refused `no_codes_left` meanwhile can be sent again (`POST /v1/automations/{id}/retry`)."""

from dataclasses import dataclass
from uuid import NAMESPACE_URL, uuid5

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer

from contracts.codec import EVENTS, MalformedMessage
from contracts.events import CodesLow
from contracts.rules import CodePattern
from contracts.topics import Topics
from projections.db import Connection
from services.coupons.contacts.consumer import OffsetConsumer, Records
from services.coupons.store import code_batches

log = structlog.get_logger(__name__)

NAME = "code-stock"
ACTOR = "code-stock"
TOP_UP_NAMESPACE = uuid5(NAMESPACE_URL, "growthos-coupons/code-top-up")
BATCH_WAIT_MS = 500
"""How long a fetch may wait for more events: each poll is a PostgreSQL transaction (its
stored offsets) though few events are `CodesLow`; without the wait there was one per
transaction the deciders commit (docs/performance/checkout.md). A top-up starts up to this
much later."""


@dataclass(frozen=True)
class TopUp:
    event_id: str
    campaign_id: str
    count: int


def code_stock(bootstrap: str, topics: Topics, pool: asyncpg.Pool) -> OffsetConsumer[TopUp]:
    async def decode(_: AIOKafkaProducer, records: Records) -> list[TopUp]:
        found = []
        for record in records:
            if b"codes_low" not in record.value:
                continue  # most events: not worth decoding
            try:
                envelope = EVENTS.decode(record.value)
            except MalformedMessage:
                continue  # parked by the decider's own readers
            event = envelope.data
            if isinstance(event, CodesLow) and event.top_up:
                found.append(TopUp(str(envelope.id), event.campaign_id, event.top_up))
        return found

    return OffsetConsumer(
        NAME,
        topics.events.name,
        bootstrap,
        pool,
        decode,
        start_batches,
        batch_wait_ms=BATCH_WAIT_MS,
    )


async def start_batches(conn: Connection, top_ups: list[TopUp]) -> int:
    for top_up in top_ups:
        pattern = await conn.fetchval(
            """SELECT pattern FROM code_batches WHERE campaign_id = $1
               ORDER BY created_at DESC LIMIT 1""",
            top_up.campaign_id,
        )
        batch_id = str(uuid5(TOP_UP_NAMESPACE, top_up.event_id))
        chosen = CodePattern() if pattern is None else CodePattern.model_validate_json(pattern)
        await code_batches.create(conn, batch_id, top_up.campaign_id, top_up.count, chosen, ACTOR)
        log.info("code_stock.top_up", campaign=top_up.campaign_id, batch=batch_id)
    return len(top_ups)

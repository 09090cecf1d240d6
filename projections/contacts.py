"""The contact graph (projection "contacts"): per contact, every coupon distributed to them
and every redemption, reversal and refund they made, with campaign, channel, source and
amounts. A redemption carries the channel and source of the contact's latest distribution of
that code; a reversal or refund carries its redemption's code and attribution."""

from typing import Any

from contracts.envelope import Envelope
from contracts.events import (
    CodeDistributed,
    CodeRedeemed,
    Event,
    RedemptionRefunded,
    RedemptionReversed,
)
from projections.db import Connection

NAME = "contacts"
TABLES = ("contact_coupons",)
COLUMNS = (
    "activity, campaign_id, code, channel, source_ref, redemption_id, order_ref, currency,"
    " amount, discount, total, refunded, occurred_at"
)


async def apply(conn: Connection, envelope: Envelope[Event]) -> None:
    at = envelope.occurred_at
    match envelope.data:
        case CodeDistributed() as event:
            await conn.execute(
                """INSERT INTO contact_coupons (event_id, contact_id, activity, campaign_id, code,
                       channel, source_ref, occurred_at)
                   VALUES ($1, $2, 'distributed', $3, $4, $5, $6, $7)""",
                envelope.id,
                event.contact_id,
                event.campaign_id,
                event.code,
                event.channel,
                event.source_ref,
                at,
            )
        case CodeRedeemed() as event:
            await conn.execute(
                """INSERT INTO contact_coupons (event_id, contact_id, activity, campaign_id, code,
                       channel, source_ref, redemption_id, order_ref, currency, amount, discount,
                       total, occurred_at)
                   SELECT $1, $2, 'redeemed', $3, $4, d.channel, d.source_ref, $5, $6, $7, $8,
                          $9, $10, $11
                   FROM (SELECT NULL) AS one LEFT JOIN LATERAL (
                       SELECT channel, source_ref FROM contact_coupons
                       WHERE contact_id = $2 AND code = $4 AND activity = 'distributed'
                       ORDER BY occurred_at DESC LIMIT 1) AS d ON true""",
                envelope.id,
                event.contact_id,
                event.campaign_id,
                event.code,
                event.redemption_id,
                event.order_ref,
                event.currency,
                event.amount,
                event.discount,
                event.total,
                at,
            )
        case RedemptionReversed() as event:
            await _follow_up(conn, envelope, "reversed", event.redemption_id, None)
        case RedemptionRefunded() as event:
            await _follow_up(conn, envelope, "refunded", event.redemption_id, event.refunded)
        case _:
            pass


async def _follow_up(
    conn: Connection,
    envelope: Envelope[Event],
    activity: str,
    redemption_id: str,
    refunded: int | None,
) -> None:
    """A row for something that happened to an earlier redemption, with its code and source."""
    await conn.execute(
        """INSERT INTO contact_coupons (event_id, contact_id, activity, campaign_id, code,
               channel, source_ref, redemption_id, order_ref, currency, discount, refunded,
               occurred_at)
           SELECT $1, contact_id, $2, campaign_id, code, channel, source_ref, redemption_id,
                  order_ref, currency, CASE WHEN $2 = 'reversed' THEN discount END, $4, $5
           FROM contact_coupons WHERE redemption_id = $3 AND activity = 'redeemed'""",
        envelope.id,
        activity,
        redemption_id,
        refunded,
        envelope.occurred_at,
    )


async def coupons(conn: Connection, contact_id: str, limit: int) -> list[dict[str, Any]]:
    records = await conn.fetch(
        f"""SELECT {COLUMNS} FROM analytics.contact_coupons WHERE contact_id = $1
            ORDER BY occurred_at, activity LIMIT $2""",
        contact_id,
        limit,
    )
    return [dict(r) for r in records]

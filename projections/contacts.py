"""The contact graph (projection "contacts"): per contact, every coupon distributed to them
and every redemption, reversal and refund they made, with campaign, channel, source and
amounts. A redemption carries the channel and source of the contact's latest distribution of
that code; a reversal or refund carries its redemption's code and attribution."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

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
INDEXES = ("contact_coupons_by_redemption", "contact_coupons_distributed")  # the lookups
COLUMNS = (
    "activity, campaign_id, code, channel, source_ref, redemption_id, order_ref, currency,"
    " amount, discount, total, refunded, occurred_at"
)


async def apply(conn: Connection, envelopes: Sequence[Envelope[Event]]) -> None:
    """Distributions first, then redemptions (which look them up), then reversals and
    refunds (which look redemptions up): a few statements per batch."""
    distributed: list[tuple[Any, ...]] = []
    redeemed: list[tuple[Any, ...]] = []
    followed: list[tuple[Any, ...]] = []
    for envelope in envelopes:
        at = envelope.occurred_at
        match envelope.data:
            case CodeDistributed() as event:
                distributed.append(
                    (
                        envelope.id,
                        event.contact_id,
                        "distributed",
                        event.campaign_id,
                        event.code,
                        event.channel,
                        event.source_ref,
                        at,
                    )
                )
            case CodeRedeemed() as e:
                redeemed.append(
                    (
                        envelope.id,
                        e.contact_id,
                        e.campaign_id,
                        e.code,
                        e.redemption_id,
                        e.order_ref,
                        e.currency,
                        e.amount,
                        e.discount,
                        e.total,
                        at,
                    )
                )
            case RedemptionReversed() as event:
                followed.append((envelope.id, "reversed", event.redemption_id, None, at))
            case RedemptionRefunded() as event:
                followed.append((envelope.id, "refunded", event.redemption_id, event.refunded, at))
            case _:
                pass
    if distributed:
        await conn.copy_records_to_table(
            "contact_coupons",
            records=distributed,
            columns=[
                "event_id",
                "contact_id",
                "activity",
                "campaign_id",
                "code",
                "channel",
                "source_ref",
                "occurred_at",
            ],
        )
    if redeemed:
        await conn.execute(
            """INSERT INTO contact_coupons (event_id, contact_id, activity, campaign_id, code,
                   channel, source_ref, redemption_id, order_ref, currency, amount, discount,
                   total, occurred_at)
               SELECT r.event_id, r.contact_id, 'redeemed', r.campaign_id, r.code, d.channel,
                      d.source_ref, r.redemption_id, r.order_ref, r.currency, r.amount,
                      r.discount, r.total, r.at
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[],
                           $11::timestamptz[])
                    AS r(event_id, contact_id, campaign_id, code, redemption_id, order_ref,
                         currency, amount, discount, total, at)
               LEFT JOIN LATERAL (
                   SELECT channel, source_ref FROM contact_coupons
                   WHERE contact_id = r.contact_id AND code = r.code
                     AND activity = 'distributed' AND occurred_at <= r.at
                   ORDER BY occurred_at DESC LIMIT 1) AS d ON true""",
            *zip(*redeemed, strict=True),
        )
    if followed:
        await conn.execute(
            """INSERT INTO contact_coupons (event_id, contact_id, activity, campaign_id, code,
                   channel, source_ref, redemption_id, order_ref, currency, discount, refunded,
                   occurred_at)
               SELECT f.event_id, c.contact_id, f.activity, c.campaign_id, c.code, c.channel,
                      c.source_ref, c.redemption_id, c.order_ref, c.currency,
                      CASE WHEN f.activity = 'reversed' THEN c.discount END, f.refunded, f.at
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[])
                    AS f(event_id, activity, redemption_id, refunded, at)
               JOIN contact_coupons c
                 ON c.redemption_id = f.redemption_id AND c.activity = 'redeemed'""",
            *zip(*followed, strict=True),
        )


async def coupons(
    conn: Connection, contact_id: str, limit: int, after: Any = None
) -> list[dict[str, Any]]:
    """Oldest first, keyset-paginated by (occurred_at, activity, event_id): a page starts
    after the row whose `event_id` is `after` (from `position`)."""
    records = await conn.fetch(
        f"""SELECT event_id, {COLUMNS} FROM contact_coupons
            WHERE contact_id = $1 AND ($3::timestamptz IS NULL
                                        OR (occurred_at, activity, event_id) > ($3, $4, $5))
            ORDER BY occurred_at, activity, event_id LIMIT $2""",
        contact_id,
        limit,
        *(after or (None, None, None)),
    )
    return [dict(r) for r in records]


async def position(conn: Connection, contact_id: str, event_id: UUID) -> Any:
    """The sort key of the contact's row `event_id`, or None when the contact has no such row."""
    return await conn.fetchrow(
        """SELECT occurred_at, activity, event_id FROM contact_coupons
           WHERE contact_id = $1 AND event_id = $2""",
        contact_id,
        event_id,
    )

"""The redemption ledger (projection "ledger"): one row per redemption with its order or
invoice reference, amounts, contact, code, campaign and attribution, and the distributions it
is attributed to. Campaign attribution sums it (`stats`, `analytics.campaign_attribution_daily`).

Attribution: a redemption is credited to the latest distribution of its code to its contact
made before it (that distribution's channel and source_ref: the sequence, broadcast or
partner); with none, to channel "direct" with no source_ref."""

from datetime import datetime
from typing import Any, Literal

from contracts.envelope import Envelope
from contracts.events import (
    CodeDistributed,
    CodeRedeemed,
    Event,
    RedemptionRefunded,
    RedemptionReversed,
)
from projections.db import Connection

NAME = "ledger"
TABLES = ("ledger", "ledger_distributions")
DIRECT = "direct"
Grouping = Literal["day", "channel", "source"]
LEDGER_COLUMNS = (
    "redemption_id, campaign_id, code, contact_id, order_ref, source, channel, source_ref,"
    " currency, amount, discount, total, refunded, net_revenue, redeemed_at, reversed_at,"
    " reversal_reason"
)
STATS_COLUMNS = (
    "distributed, redeemed, unique_contacts, conversion_rate, gross_revenue, discount_given,"
    " net_revenue, refunded, reversals"
)


async def apply(conn: Connection, envelope: Envelope[Event]) -> None:
    at = envelope.occurred_at
    match envelope.data:
        case CodeDistributed() as event:
            await conn.execute(
                """INSERT INTO ledger_distributions (distribution_id, campaign_id, code,
                       contact_id, channel, source_ref, distributed_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                event.distribution_id,
                event.campaign_id,
                event.code,
                event.contact_id,
                event.channel,
                event.source_ref,
                at,
            )
        case CodeRedeemed() as event:
            await conn.execute(
                """INSERT INTO ledger (redemption_id, campaign_id, code, contact_id, order_ref,
                       source, channel, source_ref, currency, amount, discount, total,
                       redeemed_at)
                   SELECT $1, $2, $3, $4, $5, $6, coalesce(d.channel, $12), d.source_ref, $7,
                          $8, $9, $10, $11
                   FROM (SELECT NULL) AS one LEFT JOIN LATERAL (
                       SELECT channel, source_ref FROM ledger_distributions
                       WHERE code = $3 AND contact_id = $4 AND campaign_id = $2
                         AND distributed_at <= $11
                       ORDER BY distributed_at DESC LIMIT 1) AS d ON true""",
                event.redemption_id,
                event.campaign_id,
                event.code,
                event.contact_id,
                event.order_ref,
                event.source,
                event.currency,
                event.amount,
                event.discount,
                event.total,
                at,
                DIRECT,
            )
        case RedemptionReversed() as event:
            await conn.execute(
                "UPDATE ledger SET reversed_at = $2, reversal_reason = $3 WHERE redemption_id = $1",
                event.redemption_id,
                at,
                event.reason,
            )
        case RedemptionRefunded() as event:
            await conn.execute(
                "UPDATE ledger SET refunded = refunded + $2 WHERE redemption_id = $1",
                event.redemption_id,
                event.refunded,
            )
        case _:
            pass


_KEYS: dict[Grouping, tuple[str, str]] = {
    # grouping -> (expression over a row, with {at} its timestamp column; output column)
    "day": ("({at} AT TIME ZONE 'UTC')::date", "day"),
    "channel": ("channel", "channel"),
    "source": ("coalesce(source_ref, '')", "source_ref"),
}


async def stats(
    conn: Connection,
    campaign_id: str,
    since: datetime,
    until: datetime,
    group_by: tuple[Grouping, ...],
) -> list[dict[str, Any]]:
    """Attribution over [since, until): distributions made and redemptions made in the range,
    grouped; redemption revenue as it stands now (reversed redemptions count only as
    reversals, refunds lower net revenue). Unique contacts: distinct contacts who redeemed."""

    def keys(at: str) -> str:
        return "".join(f"{_KEYS[g][0].format(at=at)} AS {_KEYS[g][1]}, " for g in group_by)

    names = [_KEYS[g][1] for g in group_by]
    by = f"GROUP BY {', '.join(names)}" if names else ""
    joined = f"FULL JOIN r USING ({', '.join(names)})" if names else "CROSS JOIN r"
    shown = "".join(
        "nullif(source_ref, '') AS source_ref, " if n == "source_ref" else f"{n}, " for n in names
    )
    order = f"ORDER BY {', '.join(names)}" if names else ""
    records = await conn.fetch(
        f"""WITH d AS (
                SELECT {keys("distributed_at")} count(*) AS distributed
                FROM analytics.distributions
                WHERE campaign_id = $1 AND distributed_at >= $2 AND distributed_at < $3 {by}
            ), r AS (
                SELECT {keys("redeemed_at")}
                       count(*) AS redeemed,
                       count(DISTINCT contact_id) AS unique_contacts,
                       count(reversed_at) AS reversals,
                       coalesce(sum(amount) FILTER (WHERE reversed_at IS NULL), 0) AS gross,
                       coalesce(sum(discount) FILTER (WHERE reversed_at IS NULL), 0) AS given,
                       coalesce(sum(net_revenue), 0) AS net,
                       coalesce(sum(refunded) FILTER (WHERE reversed_at IS NULL), 0) AS refunded
                FROM analytics.redemption_ledger
                WHERE campaign_id = $1 AND redeemed_at >= $2 AND redeemed_at < $3 {by}
            )
            SELECT {shown}
                   coalesce(d.distributed, 0)::bigint AS distributed,
                   coalesce(r.redeemed, 0)::bigint AS redeemed,
                   coalesce(r.unique_contacts, 0)::bigint AS unique_contacts,
                   CASE WHEN coalesce(d.distributed, 0) = 0 THEN NULL
                        ELSE round(coalesce(r.redeemed, 0)::numeric / d.distributed, 4)::float8
                   END AS conversion_rate,
                   coalesce(r.gross, 0)::bigint AS gross_revenue,
                   coalesce(r.given, 0)::bigint AS discount_given,
                   coalesce(r.net, 0)::bigint AS net_revenue,
                   coalesce(r.refunded, 0)::bigint AS refunded,
                   coalesce(r.reversals, 0)::bigint AS reversals
            FROM d {joined} {order}""",
        campaign_id,
        since,
        until,
    )
    return [dict(r) for r in records]


async def ledger_page(
    conn: Connection,
    since: datetime,
    until: datetime,
    campaign_id: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[dict[str, Any]]:
    """Redemptions made in [since, until), oldest first, keyset-paginated."""
    after_at, after_id = after or (since, "")
    records = await conn.fetch(
        f"""SELECT {LEDGER_COLUMNS} FROM analytics.redemption_ledger
            WHERE redeemed_at < $2 AND (redeemed_at, redemption_id) > ($3, $4)
              AND redeemed_at >= $1 AND ($5::text IS NULL OR campaign_id = $5)
            ORDER BY redeemed_at, redemption_id LIMIT $6""",
        since,
        until,
        after_at,
        after_id,
        campaign_id,
        limit,
    )
    return [dict(r) for r in records]

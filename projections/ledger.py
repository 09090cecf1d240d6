"""The redemption ledger (projection "ledger"): one row per redemption with its order or
invoice reference, amounts, contact, code, campaign and attribution, and the distributions it
is attributed to. Campaign attribution sums it (`stats`, `analytics.campaign_attribution_daily`).

Attribution: a redemption is credited to the latest distribution of its code to its contact
made before it (that distribution's channel and source_ref: the sequence, broadcast or
partner); with none, to channel "direct" with no source_ref."""

from collections import Counter
from collections.abc import Sequence
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
from projections import ledger_totals
from projections.db import Connection
from projections.ledger_totals import Totals

NAME = "ledger"
TABLES = ("ledger", "ledger_distributions", *ledger_totals.TABLES)
INDEXES = ("ledger_pkey", "ledger_distributions_by_code", *ledger_totals.INDEXES)
"""Reversals and refunds; attribution; the totals' upserts."""
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


async def apply(conn: Connection, envelopes: Sequence[Envelope[Event]]) -> None:
    """Distributions first, then redemptions (attributed to them), then reversals and
    refunds: a few statements per batch."""
    distributed: list[tuple[Any, ...]] = []
    redeemed: list[tuple[Any, ...]] = []
    reversed_: list[tuple[Any, ...]] = []
    refunded: Counter[str] = Counter()
    totals = Totals()
    for envelope in envelopes:
        at = envelope.occurred_at
        match envelope.data:
            case CodeDistributed() as e:
                distributed.append(
                    (
                        e.distribution_id,
                        e.campaign_id,
                        e.code,
                        e.contact_id,
                        e.channel,
                        e.source_ref,
                        at,
                    )
                )
                totals.distributed(ledger_totals.key(e.campaign_id, at, e.channel, e.source_ref))
            case CodeRedeemed() as e:
                redeemed.append(
                    (
                        e.redemption_id,
                        e.campaign_id,
                        e.code,
                        e.contact_id,
                        e.order_ref,
                        e.source,
                        e.currency,
                        e.amount,
                        e.discount,
                        e.total,
                        at,
                    )
                )
            case RedemptionReversed() as event:
                reversed_.append((event.redemption_id, at, event.reason))
            case RedemptionRefunded() as event:
                refunded[event.redemption_id] += event.refunded
            case _:
                pass
    if distributed:
        await conn.copy_records_to_table(
            "ledger_distributions",
            records=distributed,
            columns=[
                "distribution_id",
                "campaign_id",
                "code",
                "contact_id",
                "channel",
                "source_ref",
                "distributed_at",
            ],
        )
    if redeemed:
        inserted = await conn.fetch(
            """INSERT INTO ledger (redemption_id, campaign_id, code, contact_id, order_ref,
                   source, channel, source_ref, currency, amount, discount, total, redeemed_at)
               SELECT r.redemption_id, r.campaign_id, r.code, r.contact_id, r.order_ref,
                      r.source, coalesce(d.channel, $12), d.source_ref, r.currency, r.amount,
                      r.discount, r.total, r.at
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[],
                           $11::timestamptz[])
                    AS r(redemption_id, campaign_id, code, contact_id, order_ref, source,
                         currency, amount, discount, total, at)
               LEFT JOIN LATERAL (
                   SELECT channel, source_ref FROM ledger_distributions
                   WHERE code = r.code AND contact_id = r.contact_id
                     AND campaign_id = r.campaign_id AND distributed_at <= r.at
                   ORDER BY distributed_at DESC LIMIT 1) AS d ON true
               RETURNING campaign_id, redeemed_at, channel, source_ref, amount, discount, total""",
            *zip(*redeemed, strict=True),
            DIRECT,
        )
        for row in inserted:
            totals.redeemed(_key(row), row["amount"], row["discount"], row["total"])
    if reversed_:
        changed = await conn.fetch(
            """UPDATE ledger SET reversed_at = r.at, reversal_reason = r.reason
               FROM unnest($1::text[], $2::timestamptz[], $3::text[])
                    AS r(redemption_id, at, reason)
               WHERE ledger.redemption_id = r.redemption_id AND ledger.reversed_at IS NULL
               RETURNING campaign_id, redeemed_at, channel, source_ref, amount, discount,
                         total, refunded""",
            *zip(*reversed_, strict=True),
        )
        for row in changed:
            totals.reversed(_key(row), row)
    if refunded:
        changed = await conn.fetch(
            """UPDATE ledger SET refunded = ledger.refunded + r.refunded
               FROM unnest($1::text[], $2::bigint[]) AS r(redemption_id, refunded)
               WHERE ledger.redemption_id = r.redemption_id
               RETURNING campaign_id, redeemed_at, channel, source_ref, reversed_at,
                         r.refunded AS added""",
            list(refunded),
            list(refunded.values()),
        )
        for row in changed:
            if row["reversed_at"] is None:
                totals.refunded(_key(row), row["added"])
    await totals.write(conn)


def _key(row: Any) -> ledger_totals.Key:
    return ledger_totals.key(
        row["campaign_id"], row["redeemed_at"], row["channel"], row["source_ref"]
    )


_KEYS: dict[Grouping, tuple[str, str]] = {
    # grouping -> (expression over a row, with {at} its timestamp column; output column)
    "day": ("({at} AT TIME ZONE 'UTC')::date", "day"),
    "channel": ("channel", "channel"),
    "source": ("coalesce(source_ref, '')", "source_ref"),
}


def stats_columns(group_by: tuple[Grouping, ...]) -> list[str]:
    """The columns of `stats` rows: one per grouping, then every figure."""
    return [_KEYS[g][1] for g in group_by] + [c.strip() for c in STATS_COLUMNS.split(",")]


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

"""Attribution summed as the ledger changes (part of projection "ledger"): `ledger_daily` per
campaign, UTC day, channel and source, and `ledger_campaigns` per campaign, so a dashboard
page reads a few rows instead of summing a campaign's redemptions on every view.

`ledger.apply` hands every row it inserts or changes to a `Totals`, whose `write` adds the
differences in the same transaction: the sums always equal those of `ledger` and
`ledger_distributions` (the figures of `analytics.campaign_attribution_daily`, but unique
contacts, which cannot be summed). A reversed redemption counts only as a reversal; a refund
lowers net revenue unless the redemption is reversed (as `stats`)."""

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields
from datetime import UTC, date, datetime
from typing import Any

from projections.db import Connection

TABLES = ("ledger_daily", "ledger_campaigns")
INDEXES = ("ledger_daily_pkey", "ledger_campaigns_pkey")  # the upserts' conflict targets
Key = tuple[str, date, str, str]
"""campaign, UTC day, channel, source ('' for none)."""


@dataclass
class Figures:
    distributed: int = 0
    redeemed: int = 0
    reversals: int = 0
    gross_revenue: int = 0
    discount_given: int = 0
    net_revenue: int = 0
    refunded: int = 0


COLUMNS = tuple(f.name for f in fields(Figures))


def key(campaign_id: str, at: datetime, channel: str, source_ref: str | None) -> Key:
    return (campaign_id, at.astimezone(UTC).date(), channel, source_ref or "")


class Totals:
    """The differences a batch makes, by key, written at once."""

    def __init__(self) -> None:
        self.by_key: defaultdict[Key, Figures] = defaultdict(Figures)

    def distributed(self, at: Key) -> None:
        self.by_key[at].distributed += 1

    def redeemed(self, at: Key, amount: int, discount: int, total: int) -> None:
        figures = self.by_key[at]
        figures.redeemed += 1
        figures.gross_revenue += amount
        figures.discount_given += discount
        figures.net_revenue += total

    def reversed(self, at: Key, row: Mapping[str, Any]) -> None:
        """A redemption's reversal: its revenue, discount and refunds no longer count."""
        figures = self.by_key[at]
        figures.reversals += 1
        figures.gross_revenue -= row["amount"]
        figures.discount_given -= row["discount"]
        figures.net_revenue -= row["total"] - row["refunded"]
        figures.refunded -= row["refunded"]

    def refunded(self, at: Key, amount: int) -> None:
        """A refund of a redemption not reversed."""
        figures = self.by_key[at]
        figures.refunded += amount
        figures.net_revenue -= amount

    async def write(self, conn: Connection) -> None:
        if not self.by_key:
            return
        keys = list(self.by_key)
        figures = [astuple(self.by_key[k]) for k in keys]
        columns = ", ".join(COLUMNS)
        added = ", ".join(f"{c} = t.{c} + excluded.{c}" for c in COLUMNS)
        arrays = [list(column) for column in zip(*keys, strict=True)] + [
            list(column) for column in zip(*figures, strict=True)
        ]
        figure_params = ", ".join(f"${i + 5}::bigint[]" for i in range(len(COLUMNS)))
        await conn.execute(
            f"""INSERT INTO ledger_daily AS t (campaign_id, day, channel, source_ref, {columns})
                SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::text[],
                                     {figure_params})
                ON CONFLICT (campaign_id, day, channel, source_ref) DO UPDATE SET {added}""",
            *arrays,
        )
        sums = ", ".join(f"sum({c})" for c in COLUMNS)
        await conn.execute(
            f"""INSERT INTO ledger_campaigns AS t (campaign_id, {columns})
                SELECT campaign_id, {sums}
                FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], {figure_params})
                     AS d(campaign_id, day, channel, source_ref, {columns})
                GROUP BY campaign_id
                ON CONFLICT (campaign_id) DO UPDATE SET {added}""",
            *arrays,
        )


async def daily(
    conn: Connection, campaign_id: str, since: date, until: date, by: str | None = None
) -> list[dict[str, Any]]:
    """The campaign's figures over the UTC days [since, until), summed, or per `by` (`day`,
    `channel` or `source_ref`, then null for none)."""
    group = {"day": "day", "channel": "channel", "source_ref": "nullif(source_ref, '')"}
    picked = f"{group[by]} AS {by}, " if by else ""
    grouped = "GROUP BY 1 ORDER BY 1" if by else ""
    sums = ", ".join(f"coalesce(sum({c}), 0)::bigint AS {c}" for c in COLUMNS)
    rows = await conn.fetch(
        f"""SELECT {picked}{sums} FROM ledger_daily
            WHERE campaign_id = $1 AND day >= $2 AND day < $3 {grouped}""",
        campaign_id,
        since,
        until,
    )
    return [dict(r) for r in rows]

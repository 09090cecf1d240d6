"""The usage read model (projection "usage"): per campaign and per code, what was issued,
distributed, redeemed and reversed, what remains under the limits, the budget spent and left,
and refusals counted by reason. Analysts read it through `analytics.campaign_usage`.

`usage_codes` has a row for a campaign's shared code from its definition, and for a unique
code from its first distribution or redemption: a million-code batch adds no rows here.
`analytics.code_usage` lists the unique codes not used yet from `codes`, with zeros."""

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from contracts.envelope import Envelope
from contracts.events import (
    CampaignDefined,
    CampaignUpdated,
    CodeDistributed,
    CodeRedeemed,
    CodesAdded,
    CommandRejected,
    Event,
    RedemptionReversed,
)
from contracts.rules import Limits
from projections.db import Connection

NAME = "usage"
TABLES = ("usage_campaigns", "usage_codes", "usage_refusals", "usage_redemptions")
INDEXES = (  # the keys its upserts and lookups use
    "usage_campaigns_pkey",
    "usage_codes_pkey",
    "usage_refusals_pkey",
    "usage_redemptions_pkey",
)


async def apply(conn: Connection, envelopes: Sequence[Envelope[Event]]) -> None:
    """Sum the batch in memory, then write each table once: a few statements per batch."""
    defined: list[tuple[Any, ...]] = []
    limited: list[tuple[Any, ...]] = []  # limits changed by an update, in order
    campaigns: defaultdict[str, Counter[str]] = defaultdict(Counter)
    codes: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    refusals: Counter[tuple[str, str, str]] = Counter()
    redeemed: dict[str, str] = {}
    reversed_: list[tuple[str, str]] = []
    for envelope in envelopes:
        match envelope.data:
            case CampaignDefined(limits=limits) as event:
                defined.append(
                    (event.campaign_id, limits.max_redemptions, limits.per_code, limits.budget)
                )
                if event.code:
                    campaigns[event.campaign_id]["issued"] += 1
                    codes[event.campaign_id, event.code]["distributed"] += 0
            case CampaignUpdated(limits=Limits() as limits) as event:
                limited.append(
                    (event.campaign_id, limits.max_redemptions, limits.per_code, limits.budget)
                )
            case CodesAdded() as event:  # a code's row comes with its first use
                campaigns[event.campaign_id]["issued"] += len(event.codes)
            case CodeDistributed() as event:
                campaigns[event.campaign_id]["distributed"] += 1
                codes[event.campaign_id, event.code]["distributed"] += 1
            case CodeRedeemed() as event:
                campaigns[event.campaign_id]["redeemed"] += 1
                campaigns[event.campaign_id]["budget_spent"] += event.discount
                codes[event.campaign_id, event.code]["redeemed"] += 1
                redeemed[event.redemption_id] = event.code
            case RedemptionReversed() as event:
                campaigns[event.campaign_id]["reversed"] += 1
                campaigns[event.campaign_id]["budget_spent"] -= event.discount
                reversed_.append((event.campaign_id, event.redemption_id))
            case CommandRejected() as event:
                refusals[event.campaign_id, event.command_type, event.reason.value] += 1
            case _:
                pass
    if defined:
        await conn.executemany(
            """INSERT INTO usage_campaigns (campaign_id, max_redemptions, per_code, budget)
               VALUES ($1, $2, $3, $4) ON CONFLICT (campaign_id) DO NOTHING""",
            defined,
        )
    if limited:
        await conn.executemany(
            """UPDATE usage_campaigns SET max_redemptions = $2, per_code = $3, budget = $4
               WHERE campaign_id = $1""",
            limited,
        )
    if redeemed:
        await conn.copy_records_to_table(
            "usage_redemptions", records=list(redeemed.items()), columns=REDEMPTION_COLUMNS
        )
    if reversed_:
        found = await conn.fetch(
            "SELECT redemption_id, code FROM usage_redemptions WHERE redemption_id = ANY($1)",
            [r for _, r in reversed_],
        )
        code_of = {r["redemption_id"]: r["code"] for r in found}
        for campaign_id, redemption_id in reversed_:
            codes[campaign_id, code_of[redemption_id]]["reversed"] += 1
    if campaigns:
        await conn.execute(
            f"""UPDATE usage_campaigns AS u SET {_ADD.format(t="u")}
                FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                            $6::bigint[]) AS d(campaign_id, {", ".join(COUNTERS)})
                WHERE u.campaign_id = d.campaign_id""",
            list(campaigns),
            *([c[k] for c in campaigns.values()] for k in COUNTERS),
        )
    if codes:
        await conn.execute(
            f"""INSERT INTO usage_codes AS u (campaign_id, code, distributed, redeemed, reversed)
                SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                     $5::bigint[])
                ON CONFLICT (campaign_id, code) DO UPDATE SET
                    {", ".join(f"{k} = u.{k} + EXCLUDED.{k}" for k in CODE_COUNTERS)}""",
            [c for c, _ in codes],
            [code for _, code in codes],
            *([c[k] for c in codes.values()] for k in CODE_COUNTERS),
        )
    if refusals:
        await conn.execute(
            """INSERT INTO usage_refusals AS u (campaign_id, command_type, reason, refused)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
               ON CONFLICT (campaign_id, command_type, reason)
               DO UPDATE SET refused = u.refused + EXCLUDED.refused""",
            *([key[i] for key in refusals] for i in range(3)),
            list(refusals.values()),
        )


COUNTERS = ("issued", "distributed", "redeemed", "reversed", "budget_spent")
CODE_COUNTERS = ("distributed", "redeemed", "reversed")
REDEMPTION_COLUMNS = ["redemption_id", "code"]
_ADD = ", ".join(f"{k} = {{t}}.{k} + d.{k}" for k in COUNTERS)


async def get(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    record = await conn.fetchrow(
        "SELECT * FROM analytics.campaign_usage WHERE campaign_id = $1", campaign_id
    )
    if record is None:
        return None
    refusals = await conn.fetch(
        """SELECT command_type, reason, refused FROM analytics.refusals
           WHERE campaign_id = $1 ORDER BY command_type, reason""",
        campaign_id,
    )
    return {**dict(record), "refusals": [dict(r) for r in refusals]}

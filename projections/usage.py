"""The usage read model (projection "usage"): per campaign and per code, what was issued,
distributed, redeemed and reversed, what remains under the limits, the budget spent and left,
and refusals counted by reason. Analysts read it through `analytics.campaign_usage`."""

from typing import Any

from contracts.envelope import Envelope
from contracts.events import (
    CampaignDefined,
    CodeDistributed,
    CodeRedeemed,
    CodesAdded,
    CommandRejected,
    Event,
    RedemptionReversed,
)
from projections.db import Connection

NAME = "usage"
TABLES = ("usage_campaigns", "usage_codes", "usage_refusals", "usage_redemptions")


async def apply(conn: Connection, envelope: Envelope[Event]) -> None:
    match envelope.data:
        case CampaignDefined() as event:
            limits = event.limits
            await conn.execute(
                """INSERT INTO usage_campaigns (campaign_id, max_redemptions, per_code, budget,
                                                issued)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (campaign_id) DO NOTHING""",
                event.campaign_id,
                limits.max_redemptions,
                limits.per_code,
                limits.budget,
                1 if event.code else 0,
            )
            if event.code:
                await _code(conn, event.campaign_id, event.code, "distributed", 0)
        case CodesAdded() as event:
            await _campaign(conn, event.campaign_id, issued=len(event.codes))
            await conn.copy_records_to_table(
                "usage_codes",
                records=[(event.campaign_id, code) for code in event.codes],
                columns=["campaign_id", "code"],
            )
        case CodeDistributed() as event:
            await _campaign(conn, event.campaign_id, distributed=1)
            await _code(conn, event.campaign_id, event.code, "distributed", 1)
        case CodeRedeemed() as event:
            await _campaign(conn, event.campaign_id, redeemed=1, budget_spent=event.discount)
            await _code(conn, event.campaign_id, event.code, "redeemed", 1)
            await conn.execute(
                "INSERT INTO usage_redemptions (redemption_id, code) VALUES ($1, $2)",
                event.redemption_id,
                event.code,
            )
        case RedemptionReversed() as event:
            await _campaign(conn, event.campaign_id, reversed=1, budget_spent=-event.discount)
            await conn.execute(
                """UPDATE usage_codes SET reversed = reversed + 1
                   WHERE campaign_id = $1
                     AND code = (SELECT code FROM usage_redemptions WHERE redemption_id = $2)""",
                event.campaign_id,
                event.redemption_id,
            )
        case CommandRejected() as event:
            await conn.execute(
                """INSERT INTO usage_refusals (campaign_id, command_type, reason, refused)
                   VALUES ($1, $2, $3, 1)
                   ON CONFLICT (campaign_id, command_type, reason)
                   DO UPDATE SET refused = usage_refusals.refused + 1""",
                event.campaign_id,
                event.command_type,
                event.reason.value,
            )
        case _:
            pass


async def _campaign(conn: Connection, campaign_id: str, **deltas: int) -> None:
    sets = ", ".join(f"{column} = {column} + ${i}" for i, column in enumerate(deltas, start=2))
    await conn.execute(
        f"UPDATE usage_campaigns SET {sets} WHERE campaign_id = $1", campaign_id, *deltas.values()
    )


async def _code(conn: Connection, campaign_id: str, code: str, column: str, delta: int) -> None:
    await conn.execute(
        f"""INSERT INTO usage_codes (campaign_id, code, {column}) VALUES ($1, $2, $3)
            ON CONFLICT (campaign_id, code) DO UPDATE SET {column} = usage_codes.{column} + $3""",
        campaign_id,
        code,
        delta,
    )


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

"""The figures of an automation or a broadcast: runs by status and reason, redemptions and
discount of the treated contacts, and the lift over the control group (services.coupons.
automations.lift); the same by day of the trigger. Read from PostgreSQL."""

from typing import Any

from contracts.automations import Conversion
from projections.db import Connection
from services.coupons.automations.lift import Arm, lift

# Each contact counts once, in the arm of its first sent or held-out run, from that run's
# trigger time (t0); it converted if a conversion event of the named type, or a paid
# invoice when those count, falls within the window after t0.
_ARMS = """
    WITH arms AS (
        SELECT contact_id, (array_agg(status ORDER BY triggered_at, id))[1] AS arm,
               min(triggered_at) AS t0
        FROM automation_runs WHERE source_id = $1 AND status IN ('sent', 'held_out')
        GROUP BY contact_id
    ), outcomes AS (
        SELECT a.arm, a.contact_id, a.t0, e.n + o.n > 0 AS converted, e.amount + o.amount AS revenue
        FROM arms a
        CROSS JOIN LATERAL (
            SELECT count(*) AS n, coalesce(sum(amount), 0) AS amount FROM contact_conversions c
            WHERE c.contact_id = a.contact_id AND c.event_type = $2
              AND c.occurred_at >= a.t0 AND c.occurred_at < a.t0 + make_interval(secs => $3)
        ) e
        CROSS JOIN LATERAL (
            SELECT count(*) AS n, coalesce(sum(amount_paid - refunded), 0) AS amount
            FROM stripe_orders s
            WHERE $4 AND NOT s.reversed AND s.contact_id = a.contact_id
              AND s.paid_at >= a.t0 AND s.paid_at < a.t0 + make_interval(secs => $3)
        ) o
    )"""


async def figures(
    conn: Connection, source_id: str, campaign_id: str, conversion: Conversion
) -> dict[str, Any]:
    args = (source_id, conversion.event_type, conversion.window_s, conversion.stripe_invoice)
    statuses = await conn.fetch(
        """SELECT status, coalesce(reason, '') AS reason, count(*) AS n,
                  count(DISTINCT contact_id) AS contacts
           FROM automation_runs WHERE source_id = $1 GROUP BY status, reason""",
        source_id,
    )
    arms = {
        r["arm"]: Arm(r["contacts"], r["conversions"], int(r["revenue"]))
        for r in await conn.fetch(
            f"""{_ARMS}
                SELECT arm, count(*) AS contacts, count(*) FILTER (WHERE converted) AS conversions,
                       coalesce(sum(revenue), 0) AS revenue
                FROM outcomes GROUP BY arm""",
            *args,
        )
    }
    redeemed = await conn.fetchrow(
        """WITH treated AS (
               SELECT contact_id, min(triggered_at) AS t0 FROM automation_runs
               WHERE source_id = $1 AND status = 'sent' GROUP BY contact_id)
           SELECT count(*) AS n, coalesce(sum(l.discount), 0) AS discount
           FROM ledger l JOIN treated t ON t.contact_id = l.contact_id
           WHERE l.campaign_id = $2 AND l.redeemed_at >= t.t0 AND l.reversed_at IS NULL""",
        source_id,
        campaign_id,
    )
    assert redeemed is not None
    by_status = {r["status"]: 0 for r in statuses}
    for r in statuses:
        by_status[r["status"]] += r["n"]
    return {
        "triggered": sum(r["n"] for r in statuses),
        "by_status": by_status,
        "refused": {r["reason"]: r["n"] for r in statuses if r["status"] == "refused"},
        "sent_contacts": sum(r["contacts"] for r in statuses if r["status"] == "sent"),
        "held_out_contacts": sum(r["contacts"] for r in statuses if r["status"] == "held_out"),
        "redeemed": redeemed["n"],
        **lift(
            arms.get("sent", Arm(0, 0, 0)),
            arms.get("held_out", Arm(0, 0, 0)),
            int(redeemed["discount"]),
        ),
        "conversion": conversion.model_dump(mode="json"),
        "by_day": await _by_day(conn, args),
    }


async def _by_day(conn: Connection, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""{_ARMS}, runs AS (
                SELECT (triggered_at AT TIME ZONE 'UTC')::date AS day,
                       count(*) AS triggered,
                       count(*) FILTER (WHERE status = 'sent') AS sent,
                       count(*) FILTER (WHERE status = 'held_out') AS held_out,
                       count(*) FILTER (WHERE status = 'refused') AS refused
                FROM automation_runs WHERE source_id = $1 GROUP BY 1
            ), conv AS (
                SELECT (t0 AT TIME ZONE 'UTC')::date AS day,
                       count(*) FILTER (WHERE arm = 'sent' AND converted) AS treated_conversions,
                       count(*) FILTER (WHERE arm = 'held_out' AND converted)
                           AS control_conversions
                FROM outcomes GROUP BY 1
            )
            SELECT day, triggered, sent, held_out, refused,
                   coalesce(treated_conversions, 0) AS treated_conversions,
                   coalesce(control_conversions, 0) AS control_conversions
            FROM runs LEFT JOIN conv USING (day) ORDER BY day""",
        *args,
    )
    return [dict(r) for r in rows]

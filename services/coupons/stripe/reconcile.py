"""Reconciliation: Stripe's paid, discounted invoices of a period against the bridge's ledger.

Findings, per invoice:
- `missing`: Stripe has it, we never recorded it (a webhook never delivered or not yet handled);
- `extra`: we recorded it as paid in the period, Stripe does not list it as paid then;
- `amount_mismatch`: both have it, with a different amount paid or discount;
- `unattributed`: we have it, but some discount maps to no campaign of ours.
`--repair` records the missing ones exactly as their webhook would have (same redemption ids
and idempotency keys, so a webhook arriving later changes nothing). The others are reported
for a person to look at: nothing is deleted from an event log.
"""

import json
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg

from projections.db import Connection
from services.coupons.stripe.shapes import Payment, fact_of
from services.coupons.stripe.translate import Translator

Kind = Literal["missing", "extra", "amount_mismatch", "unattributed"]


@dataclass(frozen=True)
class Finding:
    order_ref: str
    kind: Kind
    detail: str
    repaired: bool = False


@dataclass
class Report:
    invoices: int = 0
    matched: int = 0
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "invoices": self.invoices,
                "matched": self.matched,
                "findings": [f.__dict__ for f in self.findings],
            }
        )


async def ours(conn: Connection, since: datetime, until: datetime) -> dict[str, asyncpg.Record]:
    """Our side: discounted orders paid in the period, with their discount and attribution."""
    rows = await conn.fetch(
        """SELECT o.order_ref, o.amount_paid, o.currency,
                  sum(r.discount) AS discount, count(r.unattributed) AS unattributed
           FROM stripe_orders o JOIN stripe_redemptions r USING (order_ref)
           WHERE o.paid_at >= $1 AND o.paid_at < $2
           GROUP BY o.order_ref""",
        since,
        until,
    )
    return {r["order_ref"]: r for r in rows}


async def reconcile(
    pool: asyncpg.Pool,
    invoices: AsyncIterable[dict[str, Any]],
    since: datetime,
    until: datetime,
    translator: Translator | None = None,
) -> Report:
    """Compare; with a `translator`, record what is missing."""
    report = Report()
    async with pool.acquire() as conn:
        recorded = await ours(conn, since, until)
    seen = set()
    async for invoice in invoices:
        fact = fact_of({"type": "invoice.paid", "data": {"object": invoice}})
        if not isinstance(fact, Payment) or not fact.discounts:
            continue
        report.invoices += 1
        seen.add(fact.order_ref)
        mine = recorded.get(fact.order_ref)
        if mine is None:
            async with pool.acquire() as conn:
                known = await conn.fetchval(
                    "SELECT 1 FROM stripe_orders WHERE order_ref = $1", fact.order_ref
                )
            if known:  # recorded, with its paid time just outside the period
                report.matched += 1
                continue
            detail = f"{fact.currency} {fact.amount_paid} paid, not in our ledger"
            repaired = False
            if translator is not None:
                async with pool.acquire() as conn, conn.transaction():
                    await translator.handle(conn, fact, f"reconcile-{fact.order_ref}")
                repaired = True
            report.findings.append(Finding(fact.order_ref, "missing", detail, repaired))
            continue
        discount = sum(d.amount for d in fact.discounts)
        if (mine["amount_paid"], mine["discount"]) != (fact.amount_paid, discount):
            detail = (
                f"Stripe: paid {fact.amount_paid}, discount {discount}; "
                f"ours: paid {mine['amount_paid']}, discount {mine['discount']}"
            )
            report.findings.append(Finding(fact.order_ref, "amount_mismatch", detail))
        elif mine["unattributed"]:
            detail = f"{mine['unattributed']} discount(s) map to no campaign of ours"
            report.findings.append(Finding(fact.order_ref, "unattributed", detail))
        else:
            report.matched += 1
    for order_ref in recorded.keys() - seen:
        if not order_ref.startswith("in_"):
            continue  # checkout sessions without an invoice are not invoices
        detail = "recorded as paid in the period; Stripe does not list it as paid then"
        report.findings.append(Finding(order_ref, "extra", detail))
    return report

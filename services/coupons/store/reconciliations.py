"""The Stripe reconciliation's runs and their findings (migration 0061): each run of
`coupons stripe reconcile` is recorded, the last `KEPT` are kept, and the dashboard's
Operations page shows the newest."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from projections.db import Connection
from services.coupons.stripe.reconcile import Finding, Report

KEPT = 50
"""Runs kept: enough to see a trend by hand, small enough never to need an index of its own."""


@dataclass(frozen=True)
class Run:
    ran_at: datetime
    since: datetime
    until: datetime
    repair: bool
    invoices: int
    matched: int
    findings: list[Finding]
    """The first findings, in the order the run found them (at most `shown`)."""
    found: int
    """Every finding of the run, shown or not."""

    @property
    def last_day(self) -> date:
        """The period's last day: `until` is the day after it."""
        return (self.until - timedelta(days=1)).date()


async def record(
    conn: Connection, report: Report, since: datetime, until: datetime, repair: bool
) -> int:
    """Store one run with its findings, in one transaction, and forget the runs before the
    last `KEPT` (their findings go with them)."""
    async with conn.transaction():
        run_id: int = await conn.fetchval(
            """INSERT INTO stripe_reconciliations (since, until, repair, invoices, matched)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""",
            since,
            until,
            repair,
            report.invoices,
            report.matched,
        )
        await conn.executemany(
            """INSERT INTO stripe_reconciliation_findings
                   (reconciliation_id, position, order_ref, kind, detail, repaired)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            [
                (run_id, n, f.order_ref, f.kind, f.detail, f.repaired)
                for n, f in enumerate(report.findings)
            ],
        )
        await conn.execute(
            """DELETE FROM stripe_reconciliations WHERE id <= (
                   SELECT id FROM stripe_reconciliations ORDER BY id DESC OFFSET $1 LIMIT 1)""",
            KEPT,
        )
    return run_id


async def last(conn: Connection, shown: int) -> Run | None:
    """The newest run, with its first `shown` findings; none before the first run."""
    row = await conn.fetchrow(
        """SELECT r.id, r.ran_at, r.since, r.until, r.repair, r.invoices, r.matched,
                  (SELECT count(*) FROM stripe_reconciliation_findings f
                   WHERE f.reconciliation_id = r.id) AS found
           FROM stripe_reconciliations r ORDER BY r.id DESC LIMIT 1"""
    )
    if row is None:
        return None
    findings = await conn.fetch(
        """SELECT order_ref, kind, detail, repaired FROM stripe_reconciliation_findings
           WHERE reconciliation_id = $1 ORDER BY position LIMIT $2""",
        row["id"],
        shown,
    )
    return Run(
        ran_at=row["ran_at"],
        since=row["since"],
        until=row["until"],
        repair=row["repair"],
        invoices=row["invoices"],
        matched=row["matched"],
        findings=[Finding(f["order_ref"], f["kind"], f["detail"], f["repaired"]) for f in findings],
        found=row["found"],
    )

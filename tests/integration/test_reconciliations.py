"""The Stripe reconciliation's runs in PostgreSQL: the last `KEPT` are kept, with their findings
in the order found; older runs go with their findings."""

from datetime import UTC, datetime

import asyncpg
import pytest

from services.coupons.settings import Settings
from services.coupons.store import reconciliations
from services.coupons.store.migrate import migrate
from services.coupons.stripe.reconcile import Finding, Report

pytestmark = pytest.mark.integration


async def test_the_last_runs_are_kept_with_their_findings(settings: Settings) -> None:
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        assert await reconciliations.last(conn, 10) is None
        for n in range(reconciliations.KEPT + 2):
            findings = [
                Finding(f"in_{n}_a", "missing", "EUR 500 paid, not in our ledger", True),
                Finding(f"in_{n}_b", "extra", "recorded as paid", False),
                Finding(f"in_{n}_c", "unattributed", "1 discount(s) map to no campaign", False),
            ]
            report = Report(invoices=10 + n, matched=7 + n, findings=findings)
            await reconciliations.record(conn, report, since, until, repair=n % 2 == 0)
        runs = await conn.fetch("SELECT invoices FROM stripe_reconciliations ORDER BY id")
        assert [r["invoices"] for r in runs] == [10 + n for n in range(2, reconciliations.KEPT + 2)]
        kept = await conn.fetchval("SELECT count(*) FROM stripe_reconciliation_findings")
        assert kept == 3 * reconciliations.KEPT

        newest = await reconciliations.last(conn, 2)
        assert newest is not None
        n = reconciliations.KEPT + 1
        assert (newest.invoices, newest.matched, newest.found) == (10 + n, 7 + n, 3)
        assert (newest.since, newest.until, newest.repair) == (since, until, n % 2 == 0)
        assert newest.findings == [
            Finding(f"in_{n}_a", "missing", "EUR 500 paid, not in our ledger", True),
            Finding(f"in_{n}_b", "extra", "recorded as paid", False),
        ]
    finally:
        await conn.close()

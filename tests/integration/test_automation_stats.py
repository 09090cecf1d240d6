"""The automation figures computed in PostgreSQL over a hand-built data set: who converted
within the window, revenue from conversion events and paid invoices, the discount of the
treated contacts' redemptions, and the lift."""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from contracts.automations import Conversion
from services.coupons.automations import stats
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
WINDOW = Conversion(event_type="subscription.started", window_s=14 * 86_400)


async def test_figures_on_a_hand_built_data_set(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        runs = [(f"t{i}", "sent") for i in range(10)] + [(f"h{i}", "held_out") for i in range(10)]
        await conn.executemany(
            """INSERT INTO automation_runs (id, source_kind, source_id, source_version,
                   campaign_id, contact_id, occurrence, cause, triggered_at, due_at, status)
               VALUES ($1, 'automation', 'auto', 1, 'camp', $1, 'o', 'e', $2, $2, $3)""",
            [(c, T0, s) for c, s in runs],
        )
        # a second, later run for t0 and a refusal do not count twice
        await conn.execute(
            """INSERT INTO automation_runs (id, source_kind, source_id, source_version,
                   campaign_id, contact_id, occurrence, cause, triggered_at, due_at, status,
                   reason)
               VALUES ('t0-again', 'automation', 'auto', 1, 'camp', 't0', 'o2', 'e', $1, $1,
                       'refused', 'frequency_capped')""",
            T0 + timedelta(days=1),
        )
        day = timedelta(days=1)
        conversions = [
            ("c1", "t1", T0 + day, 1000),  # in the window
            ("c2", "t2", T0 + day, 1000),
            ("c3", "t3", T0 + 13 * day, 1000),
            ("c4", "t4", T0 + 2 * day, 1000),
            ("c5", "t5", T0 + 15 * day, 1000),  # after the window
            ("c6", "t6", T0 - day, 1000),  # before the trigger
            ("c7", "h1", T0 + day, 1000),  # a control contact converts anyway
        ]
        await conn.executemany(
            """INSERT INTO contact_conversions (event_id, contact_id, event_type, occurred_at,
                   amount) VALUES ($1, $2, 'subscription.started', $3, $4)""",
            conversions,
        )
        await conn.execute(  # an unrelated event type does not count
            """INSERT INTO contact_conversions VALUES ('c8', 't7', 'page.viewed', $1, 9999)""",
            T0 + day,
        )
        await conn.execute(  # a paid invoice converts t8 (6,000 paid, 1,000 refunded)
            """INSERT INTO stripe_orders (order_ref, currency, amount_paid, contact_id, paid_at,
                   refunded) VALUES ('o1', 'EUR', 6000, 't8', $1, 1000)""",
            T0 + 3 * day,
        )
        ledger = [
            ("r1", "t1", T0 + day, None),
            ("r2", "t2", T0 + day, None),
            ("r3", "t3", T0 + day, T0 + 2 * day),  # reversed: not a cost
            ("r4", "h2", T0 + day, None),  # control contacts got no code of ours
        ]
        await conn.executemany(
            """INSERT INTO ledger (redemption_id, campaign_id, code, contact_id, order_ref,
                   source, channel, currency, amount, discount, total, redeemed_at, reversed_at)
               VALUES ($1, 'camp', 'CODE', $2, $1, 'checkout', 'sequence', 'EUR', 2000, 500,
                       1500, $3, $4)""",
            ledger,
        )
        found = await stats.figures(conn, "auto", "camp", WINDOW)
    finally:
        await conn.close()
    assert found["triggered"] == 21
    assert found["by_status"] == {"sent": 10, "held_out": 10, "refused": 1}
    assert found["refused"] == {"frequency_capped": 1}
    assert found["redeemed"] == 2 and found["discount_cost"] == 1000
    # treated: t1..t4 by event, t8 by invoice -> 5 of 10, revenue 4 x 1,000 + 5,000
    assert found["treated"]["conversions"] == 5 and found["treated"]["revenue"] == 9000
    assert found["control"]["conversions"] == 1 and found["control"]["revenue"] == 1000
    assert found["lift"] == pytest.approx(0.4)
    assert found["incremental_conversions"] == pytest.approx(4.0)
    assert found["incremental_revenue"] == 8000  # (900 - 100) a contact x 10
    assert found["return_on_discount"] == pytest.approx(7.0)  # (8,000 - 1,000) / 1,000
    assert [
        (d["day"].isoformat(), d["sent"], d["treated_conversions"]) for d in found["by_day"]
    ] == [
        ("2026-11-01", 10, 5),
        ("2026-11-02", 0, 0),
    ]

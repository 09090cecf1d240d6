"""The campaigns projection collects a batch and writes it a statement per kind: the rows it
leaves equal those of applying the same events one at a time, whatever the batch mixes (a
definition then its update, a redemption then its reversal, a code given twice)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from contracts.envelope import Envelope
from contracts.events import (
    CampaignDefined,
    CampaignStatusChanged,
    CampaignUpdated,
    CodeDistributed,
    CodeRedeemed,
    CodesAdded,
    Event,
    RedemptionReversed,
)
from contracts.money import AmountOff
from projections import campaigns
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate

pytestmark = pytest.mark.integration

TABLES = ("campaigns", "codes", "distributions", "redemptions", "campaign_audit")
START = datetime(2026, 5, 1, tzinfo=UTC)


def stream() -> list[Envelope[Event]]:
    def given(code: str, contact: str, n: int) -> CodeDistributed:
        return CodeDistributed(
            campaign_id="c1",
            distribution_id=f"d{n}",
            code=code,
            contact_id=contact,
            email=None,
            channel="email",
            source_ref=None,
            expires_at=None,
        )

    def redeemed(redemption_id: str, code: str, contact: str) -> CodeRedeemed:
        return CodeRedeemed(
            campaign_id="c1",
            redemption_id=redemption_id,
            code=code,
            contact_id=contact,
            order_ref=f"o-{redemption_id}",
            currency="EUR",
            amount=4000,
            discount=500,
            total=3500,
        )

    events: list[Event] = [
        CampaignDefined(
            campaign_id="c1", name="one", discount=AmountOff(amount_off=500, currency="EUR")
        ),
        CodesAdded(campaign_id="c1", batch_id="b1", chunk=0, codes=("AAA1", "BBB2", "CCC3")),
        CampaignUpdated(campaign_id="c1", name="renamed", reason="typo"),
        given("AAA1", "ann", 1),
        given("AAA1", "bob", 2),
        redeemed("r1", "AAA1", "ann"),
        RedemptionReversed(campaign_id="c1", redemption_id="r1", contact_id="ann", discount=500),
        redeemed("r2", "BBB2", "cat"),
        CampaignStatusChanged(campaign_id="c1", status="paused", previous="active"),
        given("CCC3", "dee", 3),
        redeemed("r3", "AAA1", "ann"),
        CampaignStatusChanged(campaign_id="c1", status="active", previous="paused"),
        RedemptionReversed(campaign_id="c1", redemption_id="r2", contact_id="cat", discount=500),
    ]
    return [
        Envelope[Event](
            key="c1", correlation_id=f"k{n}", occurred_at=START + timedelta(seconds=n), data=e
        )
        for n, e in enumerate(events)
    ]


async def rows(conn: asyncpg.Connection) -> dict[str, Any]:
    return {
        table: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} t ORDER BY t::text")]
        for table in TABLES
    }


async def test_a_batch_leaves_the_rows_of_its_events_applied_one_by_one(
    settings: Settings,
) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        events = stream()
        async with conn.transaction():
            await campaigns.apply(conn, events)
        batched = await rows(conn)
        await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        for envelope in events:
            async with conn.transaction():
                await campaigns.apply(conn, [envelope])
        assert await rows(conn) == batched

        campaign = await campaigns.get(conn, "c1")
        assert campaign is not None
        assert (campaign["name"], campaign["status"]) == ("renamed", "active")
        assert campaign["usage"] == {"distributed": 3, "redemptions": 1, "budget_spent": 500}
        codes = {c["code"]: c for c in await campaigns.codes_page(conn, "c1", 10, None)}
        assert {code: (c["contact_id"], c["redemptions"]) for code, c in codes.items()} == {
            "AAA1": ("ann", 1),
            "BBB2": (None, 0),
            "CCC3": ("dee", 0),
        }
        reversed_ = await conn.fetch(
            "SELECT redemption_id FROM redemptions WHERE reversed_at IS NOT NULL ORDER BY 1"
        )
        assert [r[0] for r in reversed_] == ["r1", "r2"]
    finally:
        await conn.close()

"""The code registry against the real database: one code string, one campaign, ever, even
when two campaigns' batches claim at the same moment."""

import asyncio

import asyncpg
import pytest

from services.coupons.settings import Settings
from services.coupons.store import code_batches
from services.coupons.store.migrate import migrate

pytestmark = pytest.mark.integration


async def test_concurrent_claims_of_two_campaigns_never_share_a_code(settings: Settings) -> None:
    conns = [await asyncpg.connect(settings.database_url) for _ in range(2)]
    try:
        await migrate(conns[0])
        for round_ in range(5):
            pool = [f"R{round_}CODE{n:05d}" for n in range(3000)]
            # each campaign's candidates in its own order, overlapping on a third of them
            first, second = pool[:2000][::-1], pool[1000:]
            claimed = await asyncio.gather(
                code_batches.claim_all(conns[0], first, "campaign-a"),
                code_batches.claim_all(conns[1], second, "campaign-b"),
            )
            a, b = (set(c) for c in claimed)
            assert not a & b
            assert a | b == set(pool)
            assert claimed[0] == [c for c in first if c in a], "kept in the order given"
            assert claimed[1] == [c for c in second if c in b]
        owners = await conns[0].fetch("SELECT campaign_id, count(*) FROM code_claims GROUP BY 1")
        assert sum(r["count"] for r in owners) == 5 * 3000
    finally:
        for conn in conns:
            await conn.close()


async def test_codes_another_campaign_has_are_left_out(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        assert await code_batches.claim_all(conn, ["AAAA1", "BBBB2"], "campaign-a") == [
            "AAAA1",
            "BBBB2",
        ]
        mixed = ["CCCC3", "BBBB2", "DDDD4", "AAAA1"]
        assert await code_batches.claim_all(conn, mixed, "campaign-b") == ["CCCC3", "DDDD4"]
        assert await code_batches.claim_all(conn, mixed, "campaign-b") == []
    finally:
        await conn.close()

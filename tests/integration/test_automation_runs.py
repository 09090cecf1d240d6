"""Recording fired triggers: each occurrence becomes one run, and the sender is woken (a
`NOTIFY` on the runs' channel, in the insert's own statement) exactly when a run is new."""

import asyncio
import time

import asyncpg
import pytest

from contracts.automations import AutomationDefinition
from services.coupons.automations import store
from services.coupons.automations.automation import Automation
from services.coupons.automations.triggers import Fired
from services.coupons.settings import Settings

pytestmark = pytest.mark.integration

WELCOME = Automation.of(
    "welcome",
    1,
    "active",
    AutomationDefinition.model_validate(
        {
            "name": "Welcome",
            "campaign_id": "WELCOME",
            "trigger": {"kind": "event", "event_type": "user.signed_up"},
        }
    ),
)


async def test_a_new_run_wakes_the_sender_and_a_recorded_occurrence_neither_counts_nor_wakes(
    settings: Settings,
) -> None:
    listener = await asyncpg.connect(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    woken: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(store.RUNS_CHANNEL, lambda *args: woken.put_nowait(args[2]))
    try:
        fired = [Fired(WELCOME, f"c{i}", f"event:e{i}", f"e{i}") for i in range(3)]
        async with conn.transaction():
            assert await store.record_fired(conn, fired, int(time.time())) == 3
        assert await asyncio.wait_for(woken.get(), 10) == store.RUNS_CHANNEL
        async with conn.transaction():
            assert await store.record_fired(conn, fired[:2], int(time.time())) == 0
            marker = await conn.fetchval("SELECT 1")  # a round trip after the insert
        assert marker == 1
        await listener.execute("SELECT 1")  # the listener has read what was sent before this
        assert woken.empty()
        count = await conn.fetchval("SELECT count(*) FROM automation_runs")
        assert count == 3
    finally:
        await listener.close()
        await conn.close()

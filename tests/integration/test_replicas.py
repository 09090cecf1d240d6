"""Three replicas of the service over six partitions, one killed with SIGKILL under checkout
load: its partitions are taken over by the survivors, every client (retrying its key on
another replica) gets an answer, and every accepted redemption is in the event log and in the
ledger exactly once. `bench/replicas.py` (`make replicas`) measures the same at length."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.coupons.settings import Settings
from services.devstack import audit
from services.devstack.fleet import Fleet
from services.devstack.replicas import (
    REPLICAS,
    RetryingLoad,
    campaign_ids,
    define,
    held,
    reassigned,
)
from tests.integration.conftest import RELAXED, create_key, free_port

pytestmark = pytest.mark.integration

TAKEOVER_BOUND_S = 30
"""A bound for the test, not the goal: the goal (10 s) is measured by `make replicas`."""


@pytest.fixture
def six(settings: Settings) -> Settings:
    return settings.model_copy(update={"partitions": 6})


@pytest.fixture
def fleet(six: Settings, tmp_path: Path) -> Iterator[Fleet]:
    found = Fleet(
        {
            "KAFKA_BOOTSTRAP_SERVERS": six.kafka_bootstrap_servers,
            "DATABASE_URL": six.database_url,
            "COUPONS_TOPIC_PREFIX": six.topic_prefix,
            "COUPONS_PARTITIONS": "6",
            "COUPONS_LOG_FORMAT": "json",
            **RELAXED,
        }
    )
    for name in REPLICAS:
        found.add(name, "decider,projector,stripe", free_port(), tmp_path)
    yield found
    found.stop_all()


async def test_a_replica_killed_under_load_loses_and_doubles_nothing(
    six: Settings, fleet: Fleet
) -> None:
    fleet.start("r1")  # it creates the topics and migrates the schema
    await fleet.ready(["r1"])
    fleet.start("r2")
    fleet.start("r3")
    await fleet.ready()
    key = create_key(six.database_url, "admin")
    tag = uuid.uuid4().hex[:6]
    ids = campaign_ids(6, 1, tag)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=fleet.members["r1"].base_url, headers=auth) as http:
        codes = [await define(http, cid) for cid in ids]

    bases = [m.base_url for m in fleet.members.values()]
    load = RetryingLoad(bases, key, codes, clients=6)
    running = asyncio.create_task(load.run())
    await asyncio.sleep(5)
    partitions = held(fleet, "r3")
    assert partitions, "the third replica's decider held no partition"
    killed_at, killed = datetime.now(UTC), time.monotonic()
    fleet.kill("r3")
    taken_s = await reassigned(fleet, partitions, killed_at, timeout_s=TAKEOVER_BOUND_S)
    print(f"partitions {sorted(partitions)} taken over after {taken_s:.1f} s")
    for _ in range(300):  # every campaign, so every partition, decides again
        if len(load.codes_accepted_since(killed)) == len(codes):
            break
        await asyncio.sleep(0.2)
    assert load.codes_accepted_since(killed) == set(codes)
    load.stop()
    await asyncio.wait_for(running, 60)  # every key in flight is answered

    assert not load.errors, load.errors[:3]
    assert not load.refused, list(load.refused.values())[:3]
    accepted = {rid for rid, _ in load.accepted.values()}
    assert len(accepted) == len(load.accepted) > 50
    events = await audit.logged_events(six)
    await audit.projections_caught_up(six)
    logged = [e.redemption_id for cid in ids for e in audit.redeemed(events, cid)]
    ledger = await audit.ledger_ids(six, ids)
    assert audit.exactly_once("redemptions", accepted, logged, ledger) == []

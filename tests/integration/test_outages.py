"""A broker or database outage does not freeze the service: under checkout load from clients
that retry with their keys, Kafka and then PostgreSQL are stopped for 10 s each. `/readyz`
answers 503 at once during each, no request gets a bare 500, every component resumes within
seconds of the dependency's return without a restart by hand, and every accepted redemption
is counted once. The stack is the test's own, since it is stopped (longer outages:
`make outages`)."""

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition

from contracts.topics import declare
from services.coupons.bus import kafka
from services.devstack import service as coupons_process
from services.devstack.jars import default_cache_dir
from services.devstack.kafka import LocalKafka
from services.devstack.outages import CheckoutLoad, Recovery, rehearse
from services.devstack.postgres import LocalPostgres
from services.devstack.stack import default_state_dir
from tests.integration.conftest import (
    RELAXED,
    TEST_KAFKA_PORT,
    TEST_PG_PORT,
    create_key,
    free_port,
)

pytestmark = pytest.mark.integration

OUTAGE_S = 10
RECOVERY_S = 30  # what the test allows; docs/performance/resilience.md says what it takes
PARTITIONS = 3


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LocalKafka, LocalPostgres]]:
    # beside the suite's own stack: the postgres user must reach it (not under /tmp/pytest-*)
    state = Path(os.environ.get("COUPONS_TEST_STATE_DIR", default_state_dir() / "test"))
    state = state / "outages"
    broker = LocalKafka(state, port=TEST_KAFKA_PORT + 50, cache_dir=default_cache_dir())
    database = LocalPostgres(state, port=TEST_PG_PORT + 50, database="outages")
    try:
        broker.start()
        database.start()
        yield broker, database
    finally:
        broker.stop()
        database.stop()


def spawn(
    broker: LocalKafka, database: LocalPostgres, log: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    """`coupons serve` on the test's stack, started: the process, its topic prefix and its
    address."""
    port = free_port()
    prefix = f"o{uuid.uuid4().hex[:8]}."
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "DATABASE_URL": database.database_url,
        "COUPONS_TOPIC_PREFIX": prefix,
        "COUPONS_PARTITIONS": str(PARTITIONS),
        "COUPONS_PORT": str(port),
        **RELAXED,
    }
    return coupons_process.serve(env, log), prefix, f"http://127.0.0.1:{port}"


def serve(
    broker: LocalKafka, database: LocalPostgres, log: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    """`coupons serve` on the test's stack, once ready."""
    process, prefix, base = spawn(broker, database, log)
    coupons_process.wait_ready(process, base, log)
    return process, prefix, base


async def redeemed_in_the_log(bootstrap: str, prefix: str, campaign_id: str) -> int:
    topic = declare(prefix, PARTITIONS).events.name
    reader = kafka.reader(bootstrap)
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        count = 0
        for tp in tps:
            while await reader.position(tp) < ends[tp]:
                for record in (await reader.getmany(tp, timeout_ms=500)).get(tp, []):
                    typed = dict(record.headers).get("type") == b"coupon.code_redeemed.v1"
                    count += typed and record.key == campaign_id.encode()
        return count
    finally:
        await reader.stop()


def assert_recovered(found: Recovery) -> None:
    assert found.readyz_during == {503}, found
    assert found.slowest_readyz_s < 5, found
    assert found.ready_after_s is not None and found.ready_after_s < RECOVERY_S, found
    assert found.first_accepted_after_s is not None, found
    assert found.first_accepted_after_s < RECOVERY_S, found


async def test_kafka_and_postgresql_outages_under_load(
    stack: tuple[LocalKafka, LocalPostgres], tmp_path: Path
) -> None:
    broker, database = stack
    process, prefix, base = serve(broker, database, tmp_path / "service.log")
    try:
        key = create_key(database.database_url, "admin")
        auth = {"Authorization": f"Bearer {key}"}
        http = httpx.AsyncClient(base_url=base, headers=auth, timeout=30)
        code = f"OUTAGE{uuid.uuid4().hex[:8].upper()}"  # the stack's data outlives a run
        body = {
            "name": "Outage",
            "code": code,
            "discount": {"kind": "amount", "amount_off": 100, "currency": "EUR"},
            "limits": {"per_contact": None},
        }
        created = await http.post("/v1/campaigns", json=body)
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]

        load = CheckoutLoad(base, key, code, clients=8)
        running = asyncio.create_task(load.run(keys=100_000, pace_s=0.1))
        await asyncio.sleep(3)
        kafka_outage = await rehearse(load, "kafka", broker.stop, broker.start, OUTAGE_S)
        await asyncio.sleep(3)
        pg_outage = await rehearse(load, "postgres", database.stop, database.start, OUTAGE_S)
        await asyncio.sleep(3)
        load.stop()
        await asyncio.wait_for(running, 120)  # every key in flight is answered

        print(kafka_outage, pg_outage)  # the figures, in the test's output
        assert not load.errors, load.errors[:5]
        assert_recovered(kafka_outage)
        assert_recovered(pg_outage)
        accepted = len(load.accepted)
        assert accepted > 100, load.refused
        assert not load.refused, set(load.refused.values())

        async def counted() -> tuple[int, int]:
            view = (await http.get(f"/v1/campaigns/{campaign_id}")).json()["usage"]
            usage = (await http.get(f"/v1/campaigns/{campaign_id}/usage")).json()
            return view["redemptions"], usage["redeemed"]

        for _ in range(60):  # the projection applies the last ones within moments
            if await counted() == (accepted, accepted):
                break
            await asyncio.sleep(0.5)
        assert await counted() == (accepted, accepted)
        logged = await redeemed_in_the_log(broker.bootstrap_servers, prefix, campaign_id)
        assert logged == accepted
    finally:
        process.terminate()
        assert process.wait(timeout=30) in (0, -15), "no graceful shutdown in 30 s"


@pytest.mark.parametrize("dependency", ["kafka", "postgres"])
def test_a_process_started_during_an_outage_comes_up_with_its_dependency(
    stack: tuple[LocalKafka, LocalPostgres], tmp_path: Path, dependency: str
) -> None:
    """A supervisor restarting a crashed process during an outage, or a person starting it:
    it waits for the dependency (saying so in its log) instead of exiting, and is ready soon
    after the dependency returns (`make chaos` found it exiting)."""
    broker, database = stack
    down = broker if dependency == "kafka" else database
    log = tmp_path / "service.log"
    down.stop()
    try:
        process, _, base = spawn(broker, database, log)
        waiting = f'"dependency": "{dependency}", "error"'
        deadline = time.monotonic() + 60
        while waiting not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert process.poll() is None, log.read_text()[-3000:]
    finally:
        down.start()
    try:
        deadline = time.monotonic() + RECOVERY_S
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
    finally:
        process.terminate()
        assert process.wait(timeout=30) in (0, -15), "no graceful shutdown in 30 s"


def test_ctrl_c_exits_within_seconds_while_the_broker_does_not_answer(
    stack: tuple[LocalKafka, LocalPostgres], tmp_path: Path
) -> None:
    """Every component's stop gives up on its Kafka clients after 5 s, all of them at once:
    one after another, Ctrl-C took 35 s with the broker frozen (seven components at 5 s)."""
    broker, database = stack
    log = tmp_path / "service.log"
    process, _, _ = serve(broker, database, log)
    try:
        with broker.hung():
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pytest.fail("still running 15 s after Ctrl-C:\n" + log.read_text()[-3000:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

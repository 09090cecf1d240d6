"""Validations read an in-memory view folded from the event log: a replica that starts later
is ready only once its view has the whole history, and answers from it at once."""

import asyncio
import time
import uuid

import pytest

from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.settings import Settings
from tests.integration.conftest import ServiceFactory
from tests.integration.helpers import campaign, checkout, replies_on_the_topic

pytestmark = pytest.mark.integration


def test_a_replica_started_later_validates_codes_made_before_it_started(
    start_service: ServiceFactory,
) -> None:
    first, _ = start_service()
    made = campaign(first, "EARLYBIRD", limits={"max_redemptions": 1})
    redeemed = first.post(
        "/v1/redemptions", json=checkout("EARLYBIRD", "ann"), headers={"Idempotency-Key": "k1"}
    )
    assert redeemed.status_code == 201

    second, _ = start_service()  # returns once /readyz says ready
    assert second.get("/readyz").json()["checks"].get("campaign_view") is None
    body = checkout("earlybird", "bob")
    del body["order_ref"]
    answer = second.post("/v1/validations", json=body).json()
    assert answer["campaign_id"] == made["id"]
    assert answer["refusal"]["code"] == "exhausted", "the view has the redemption too"


def test_worker_processes_share_the_port_and_each_has_the_campaigns(
    start_service: ServiceFactory,
) -> None:
    client, log = start_service(COUPONS_WORKERS="2")
    campaign(client, "TWOWORKERS")
    body = checkout("TWOWORKERS", "ann")
    del body["order_ref"]
    deadline = time.monotonic() + 60  # /readyz answered once one worker was up
    while (started := log.read_text().count('"event": "runtime.started"')) < 2:
        assert time.monotonic() < deadline, f"{started} runtimes started"
        time.sleep(0.2)
    assert started == 2, f"{started} runtimes started"
    answers = [client.post("/v1/validations", json=body).json() for _ in range(20)]
    assert all(a["valid"] for a in answers), answers


def test_a_redemption_answered_by_one_replica_is_read_and_reversed_at_once_by_another(
    start_service: ServiceFactory, settings: Settings
) -> None:
    """A redemption is answered from the decider's reply, before the `campaigns` projection
    has it; another replica's read that misses waits for the projection instead of a 404.
    Replies to commands sent by the deciding process are handed over in memory, and the other
    replica's (the reversals) through the local socket: both run on this host, so no reply
    goes through the replies topic."""
    deciding, _ = start_service(COUPONS_COMPONENTS="decider")
    projecting, _ = start_service(COUPONS_COMPONENTS="projector")
    created = campaign(deciding, "ATONCE", limits={"per_contact": None})
    for i in range(10):
        redeemed = deciding.post(
            "/v1/redemptions", json=checkout("ATONCE", f"c{i}"), headers={"Idempotency-Key": f"{i}"}
        )
        assert redeemed.status_code == 201, redeemed.text
        path = f"/v1/redemptions/{redeemed.json()['redemption_id']}"
        read = projecting.get(path)
        assert read.status_code == 200, read.text
        assert read.json() | {"stacked": []} == redeemed.json()
        reversed_ = projecting.post(f"{path}/reversal", json={"reason": "cancelled"})
        assert reversed_.status_code == 200, reversed_.text
    assert deciding.get(f"/v1/campaigns/{created['id']}").json()["usage"]["redemptions"] == 0
    assert asyncio.run(replies_on_the_topic(settings)) == 0


def test_the_deciding_process_folds_its_transactions_once(start_service: ServiceFactory) -> None:
    """The deciding process hands each committed transaction to its own campaign view, and the
    view's consumer then skips those events: folding them twice would count each redemption
    twice, and the next validation would refuse a code that still has room."""
    client, _ = start_service()
    campaign(client, "FOLDONCE", limits={"max_redemptions": 4, "per_contact": None})

    def validate(contact: str) -> dict[str, object]:
        body = checkout("FOLDONCE", contact)
        del body["order_ref"]
        return dict(client.post("/v1/validations", json=body).json())

    for i in range(3):
        redeemed = client.post(
            "/v1/redemptions",
            json=checkout("FOLDONCE", f"c{i}"),
            headers={"Idempotency-Key": f"{i}"},
        )
        assert redeemed.status_code == 201, redeemed.text
        assert validate(f"v{i}")["valid"] is True, f"after {i + 1} of 4 redemptions"
    time.sleep(1)  # the view's consumer has fetched the same events by now
    assert validate("late")["valid"] is True, "3 of 4 redemptions, counted once"
    last = client.post(
        "/v1/redemptions", json=checkout("FOLDONCE", "c3"), headers={"Idempotency-Key": "3"}
    )
    assert last.status_code == 201, last.text
    refusal = validate("after")["refusal"]
    assert isinstance(refusal, dict) and refusal["code"] == "exhausted"


def test_a_read_that_misses_is_not_held_by_a_transaction_aborted_at_the_logs_end(
    start_service: ServiceFactory, settings: Settings
) -> None:
    """A miss waits for the view to reach the log's end (`caught_up`). An aborted transaction
    (an idle writer aborts its begun one every 20 s) moves that end with no event to fold:
    the view's position moved past it, but waiters were woken only by events, so a read
    right after one waited out its whole timeout and answered `503 projection_lagging`
    (found by the schemathesis test). It answers at once: no such redemption."""
    client, _ = start_service(COUPONS_COMPONENTS="decider,projector")
    campaign(client, "ABORTEDEND")

    async def abort_one() -> None:
        producer = kafka.producer(
            settings.kafka_bootstrap_servers, transactional_id=f"aborts-{uuid.uuid4().hex}"
        )
        await producer.start()
        try:
            await producer.begin_transaction()
            topic = declare(settings.topic_prefix, settings.partitions).events.name
            await producer.send_and_wait(topic, b"never committed", partition=0)
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(abort_one())
    missed = client.get(f"/v1/redemptions/{uuid.uuid4()}")
    assert missed.status_code == 404, missed.text
    assert missed.json()["error"]["code"] == "redemption_not_found"

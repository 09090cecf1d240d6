"""End to end over HTTP: `coupons serve` as a real process on real Kafka and PostgreSQL.

POST /v1/campaigns -> command on Kafka -> decider appends CampaignDefined -> projection writes
PostgreSQL -> GET reads it, right after the POST returned (read-your-writes)."""

import json
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

PERCENT_20 = {"kind": "percent", "percent_off": "20"}


def test_define_then_read_your_write(service: tuple[httpx.Client, Path]) -> None:
    client, _ = service
    created = client.post("/v1/campaigns", json={"name": "Trial rescue", "discount": PERCENT_20})
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert campaign["name"] == "Trial rescue"
    assert campaign["discount"] == {
        "kind": "percent",
        "percent_off": "20",
        "max_amount_off": None,
        "currency": None,
    }
    assert created.headers["location"] == f"/v1/campaigns/{campaign['id']}"
    fetched = client.get(created.headers["location"])  # immediately: no sleep, no retry
    assert fetched.status_code == 200
    assert fetched.json() == campaign
    listed = client.get("/v1/campaigns").json()
    assert [c["id"] for c in listed["data"]] == [campaign["id"]]


def test_a_retried_post_has_one_effect(service: tuple[httpx.Client, Path]) -> None:
    client, _ = service
    body = {
        "name": "Launch week",
        "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
    }
    answers = [
        client.post("/v1/campaigns", json=body, headers={"Idempotency-Key": "launch-1"})
        for _ in range(3)
    ]
    assert {a.status_code for a in answers} == {201}
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert len(client.get("/v1/campaigns").json()["data"]) == 1

    other = client.post(
        "/v1/campaigns",
        json={**body, "name": "Not the same"},
        headers={"Idempotency-Key": "launch-1"},
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_refusals_carry_stable_codes(service: tuple[httpx.Client, Path]) -> None:
    client, _ = service
    first = client.post(
        "/v1/campaigns", json={"id": "spring", "name": "Spring", "discount": PERCENT_20}
    )
    assert first.status_code == 201
    again = client.post(
        "/v1/campaigns", json={"id": "spring", "name": "Spring 2", "discount": PERCENT_20}
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "campaign_exists"

    missing = client.get("/v1/campaigns/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "campaign_not_found"

    bad = client.post(
        "/v1/campaigns", json={"name": "X", "discount": {"kind": "percent", "percent_off": "150"}}
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == {
        "code": "invalid_request",
        "message": bad.json()["error"]["message"],
        "field": "discount.percent.percent_off",
    }
    broken = client.post(
        "/v1/campaigns", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"
    cursor = client.get("/v1/campaigns", params={"cursor": "!!!"})
    assert cursor.status_code == 422
    assert cursor.json()["error"]["code"] == "invalid_cursor"


def test_pagination_walks_every_campaign_once(service: tuple[httpx.Client, Path]) -> None:
    client, _ = service
    ids = {
        client.post("/v1/campaigns", json={"name": f"c{i}", "discount": PERCENT_20}).json()["id"]
        for i in range(5)
    }
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get(
            "/v1/campaigns", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen.extend(c["id"] for c in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)


def test_correlation_id_follows_http_kafka_and_projection(
    service: tuple[httpx.Client, Path],
) -> None:
    client, log_path = service
    created = client.post(
        "/v1/campaigns",
        json={"name": "Traced", "discount": PERCENT_20},
        headers={"X-Correlation-Id": "trace-me-42"},
    )
    assert created.status_code == 201
    assert created.headers["x-correlation-id"] == "trace-me-42"

    def traced() -> set[str]:
        lines = log_path.read_text().splitlines()
        logged = [json.loads(line) for line in lines if line.startswith("{")]
        return {line["event"] for line in logged if line.get("correlation_id") == "trace-me-42"}

    followed = {"http.request", "decider.decided", "projection.applied"}
    assert followed <= eventually(traced, lambda events: followed <= events)


def test_contracts_and_health_are_published(service: tuple[httpx.Client, Path]) -> None:
    client, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True
    assert ready["checks"]["projection_lag"] == {
        "campaigns": 0,
        "usage": 0,
        "contacts": 0,
        "ledger": 0,
    }
    asyncapi = client.get("/asyncapi.json").json()
    assert asyncapi["asyncapi"].startswith("3.")
    assert any(name.endswith("coupons.events.v1") for name in asyncapi["channels"])
    schemas = json.dumps(asyncapi["components"])
    assert "coupon.campaign_defined.v1" in schemas and "coupon.define_campaign.v1" in schemas
    openapi = client.get("/openapi.json").json()
    assert {"/v1/campaigns", "/v1/campaigns/{campaign_id}", "/readyz"} <= set(openapi["paths"])

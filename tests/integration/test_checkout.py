"""Checkout over HTTP against the real service: limits hold exactly under concurrency,
retries have one effect, refusals carry stable reasons, reversals release what they held."""

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.helpers import campaign, checkout, codes_of, redeem_all

pytestmark = pytest.mark.integration

Service = tuple[httpx.Client, Path]


async def test_a_thousand_concurrent_redemptions_of_a_code_capped_at_100_accept_exactly_100(
    service: Service,
) -> None:
    client, _ = service
    created = campaign(client, "LAUNCH100", limits={"max_redemptions": 100, "per_contact": 1})
    responses = await redeem_all(
        client, [(f"k{i}", checkout("launch-100", f"contact-{i}")) for i in range(1000)]
    )
    assert codes_of(responses) == {"accepted": 100, "exhausted": 900}
    assert {r.status_code for r in responses} == {201, 409}
    usage = client.get(f"/v1/campaigns/{created['id']}").json()["usage"]
    assert usage == {"distributed": 0, "redemptions": 100, "budget_spent": 100 * 500}


async def test_fifty_concurrent_redemptions_by_one_contact_accept_exactly_one(
    service: Service,
) -> None:
    client, _ = service
    campaign(client, "ONCEEACH", limits={"per_contact": 1})
    responses = await redeem_all(
        client, [(f"k{i}", checkout("ONCEEACH", "same-contact")) for i in range(50)]
    )
    assert codes_of(responses) == {"accepted": 1, "per_contact_limit": 49}


async def test_a_budget_is_never_exceeded(service: Service) -> None:
    client, _ = service
    created = campaign(client, "BUDGET", limits={"budget": 1200, "per_contact": None})
    responses = await redeem_all(
        client, [(f"k{i}", checkout("BUDGET", f"c{i}")) for i in range(30)]
    )
    assert codes_of(responses) == {"accepted": 2, "budget_exhausted": 28}
    assert client.get(f"/v1/campaigns/{created['id']}").json()["usage"]["budget_spent"] == 1000


def test_a_retried_redemption_has_one_effect(service: Service) -> None:
    client, _ = service
    created = campaign(client, "RETRY", limits={"per_contact": None})
    body = checkout("RETRY", "alice")
    first, second = (
        client.post("/v1/redemptions", json=body, headers={"Idempotency-Key": "pay-1"})
        for _ in range(2)
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()  # the first from the decider's reply, the retry not
    read = client.get(f"/v1/redemptions/{first.json()['redemption_id']}")
    assert read.json() | {"stacked": []} == first.json()
    other = client.post(
        "/v1/redemptions", json=checkout("RETRY", "bob"), headers={"Idempotency-Key": "pay-1"}
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert client.get(f"/v1/campaigns/{created['id']}").json()["usage"]["redemptions"] == 1
    missing = client.post("/v1/redemptions", json=body)
    assert (
        missing.status_code == 422 and missing.json()["error"]["field"] == "header.idempotency-key"
    )


def test_the_server_computes_the_discount_and_validation_changes_nothing(service: Service) -> None:
    client, _ = service
    created = campaign(
        client,
        "Spring-15",
        discount={
            "kind": "percent",
            "percent_off": "15",
            "max_amount_off": 1000,
            "currency": "EUR",
        },
        eligibility={"min_amount": 300},
    )
    valid = client.post("/v1/validations", json=checkout("spring15", "alice", amount=333)).json()
    assert valid["valid"] is True
    assert (valid["campaign_id"], valid["discount"], valid["total"]) == (created["id"], 50, 283)
    low = client.post("/v1/validations", json=checkout("SPRING15", "alice", amount=100)).json()
    assert low["valid"] is False and low["refusal"]["code"] == "below_minimum"
    unknown = client.post("/v1/validations", json=checkout("NOPE", "alice")).json()
    assert unknown["valid"] is False and unknown["refusal"]["code"] == "unknown_code"
    assert client.get(f"/v1/campaigns/{created['id']}").json()["usage"]["redemptions"] == 0

    redeemed = client.post(
        "/v1/redemptions",
        json=checkout("SPRING-15", "alice", amount=333),
        headers={"Idempotency-Key": "o1"},
    )
    assert redeemed.status_code == 201
    assert (redeemed.json()["discount"], redeemed.json()["total"]) == (50, 283)
    again = client.post("/v1/validations", json=checkout("SPRING15", "alice", amount=333)).json()
    assert again["valid"] is False and again["refusal"]["code"] == "per_contact_limit"
    unknown_redeem = client.post(
        "/v1/redemptions", json=checkout("NOPE", "alice"), headers={"Idempotency-Key": "o2"}
    )
    assert (
        unknown_redeem.status_code == 404
        and unknown_redeem.json()["error"]["code"] == "unknown_code"
    )


def test_reversal_releases_the_redemption_once(service: Service) -> None:
    client, _ = service
    created = campaign(client, "ONEONLY", limits={"max_redemptions": 1})
    first = client.post(
        "/v1/redemptions", json=checkout("ONEONLY", "alice"), headers={"Idempotency-Key": "a"}
    )
    assert first.status_code == 201
    blocked = client.post(
        "/v1/redemptions", json=checkout("ONEONLY", "bob"), headers={"Idempotency-Key": "b"}
    )
    assert blocked.json()["error"]["code"] == "exhausted"
    redemption_id = first.json()["redemption_id"]
    reversed_ = client.post(f"/v1/redemptions/{redemption_id}/reversal", json={"reason": "refund"})
    assert reversed_.status_code == 200 and reversed_.json()["reversed_at"] is not None
    retry = client.post(f"/v1/redemptions/{redemption_id}/reversal", json={"reason": "refund"})
    assert retry.status_code == 200 and retry.json() == reversed_.json()
    twice = client.post(
        f"/v1/redemptions/{redemption_id}/reversal", json={}, headers={"Idempotency-Key": "new"}
    )
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_reversed"
    now_ok = client.post(
        "/v1/redemptions", json=checkout("ONEONLY", "bob"), headers={"Idempotency-Key": "c"}
    )
    assert now_ok.status_code == 201
    assert client.get(f"/v1/campaigns/{created['id']}").json()["usage"] == {
        "distributed": 0,
        "redemptions": 1,
        "budget_spent": 500,
    }


def test_status_and_code_uniqueness(service: Service) -> None:
    client, _ = service
    created = campaign(client, "PAUSEME")
    taken = client.post(
        "/v1/campaigns",
        json={
            "name": "Copycat",
            "code": "pause-me",
            "discount": {"kind": "percent", "percent_off": "5"},
        },
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "code_taken"
    paused = client.post(f"/v1/campaigns/{created['id']}/status", json={"status": "paused"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    refused = client.post(
        "/v1/redemptions", json=checkout("PAUSEME", "alice"), headers={"Idempotency-Key": "p"}
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "paused"
    client.post(f"/v1/campaigns/{created['id']}/status", json={"status": "ended"})
    back = client.post(f"/v1/campaigns/{created['id']}/status", json={"status": "active"})
    assert back.status_code == 409 and back.json()["error"]["code"] == "invalid_status_transition"
    assert created["validity"]["expires_at"] is not None  # every coupon expires


def test_malformed_checkout_requests_are_refused_naming_the_field(service: Service) -> None:
    """Validations and redemptions are served by the checkout lane, not FastAPI's routing:
    the same error shape, the field at fault, never a 500."""
    client, _ = service
    campaign(client, "LANE")
    key = {"Idempotency-Key": "lane-1"}

    def refused(path: str, **request: Any) -> tuple[int, str, str | None]:
        answered = client.post(path, **request)
        assert answered.headers["x-correlation-id"]
        error = answered.json()["error"]
        return answered.status_code, error["code"], error["field"]

    for path in ("/v1/validations", "/v1/redemptions"):
        assert refused(path, content=b"{oops", headers=key) == (400, "invalid_json", None)
        no_cart = {k: v for k, v in checkout("LANE", "a").items() if k != "cart"}
        assert refused(path, json=no_cart, headers=key) == (422, "invalid_request", "cart")
        text_amount = checkout("LANE", "a") | {"cart": {"currency": "EUR", "amount": "lots"}}
        assert refused(path, json=text_amount, headers=key) == (
            422,
            "invalid_request",
            "cart.amount",
        )
        both = checkout("LANE", "a", codes=["LANE"])
        assert refused(path, json=both, headers=key) == (422, "invalid_request", "code")
        anonymous = httpx.post(str(client.base_url) + path, json=checkout("LANE", "a"))
        assert anonymous.status_code == 401
        assert client.get(path).status_code == 405
    too_long = {"Idempotency-Key": "k" * 256}
    assert refused("/v1/redemptions", json=checkout("LANE", "a"), headers=too_long) == (
        422,
        "invalid_request",
        "header.idempotency-key",
    )
    redeemed = client.post("/v1/redemptions", json=checkout("LANE", "a"), headers=key)
    assert redeemed.status_code == 201, redeemed.text
    assert redeemed.headers["location"] == f"/v1/redemptions/{redeemed.json()['redemption_id']}"
    assert redeemed.headers["content-type"] == "application/json"

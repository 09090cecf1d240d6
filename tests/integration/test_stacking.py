"""Several codes in one cart: only when every campaign allows stacking, each taking its
discount from what the earlier ones left, and an order gets all its codes or none."""

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.helpers import campaign

pytestmark = pytest.mark.integration

Service = tuple[httpx.Client, Path]
STACKABLE = {"eligibility": {"stackable": True}}
HALF_OFF = {"discount": {"kind": "percent", "percent_off": "50"}}


def order(*codes: str, contact: str = "ann", amount: int = 10_000) -> dict[str, Any]:
    return {
        "codes": list(codes),
        "customer": {"contact_id": contact},
        "cart": {"currency": "EUR", "amount": amount},
        "order_ref": f"order-{contact}",
    }


def usage(client: httpx.Client, campaign_id: str) -> int:
    found: int = client.get(f"/v1/campaigns/{campaign_id}").json()["usage"]["redemptions"]
    return found


def test_stackable_codes_apply_in_order_to_what_is_left(service: Service) -> None:
    client, _ = service
    half = campaign(client, "HALFA", **HALF_OFF, **STACKABLE)
    five = campaign(client, "FIVEB", **STACKABLE)  # 500 off

    checked = client.post("/v1/validations", json=order("halfa", "FIVE-B")).json()
    assert checked["valid"] is True
    assert [c["discount"] for c in checked["codes"]] == [5000, 500]
    assert (checked["discount"], checked["total"]) == (5500, 4500)

    redeemed = client.post(
        "/v1/redemptions", json=order("HALFA", "FIVEB"), headers={"Idempotency-Key": "o1"}
    )
    assert redeemed.status_code == 201, redeemed.text
    body = redeemed.json()
    assert (body["campaign_id"], body["discount"]) == (half["id"], 5000)
    assert [(r["campaign_id"], r["discount"], r["total"]) for r in body["stacked"]] == [
        (five["id"], 500, 4500)
    ]
    again = client.post(
        "/v1/redemptions", json=order("HALFA", "FIVEB"), headers={"Idempotency-Key": "o1"}
    )
    assert again.json() == body, "a retried order has one effect"
    assert usage(client, half["id"]) == usage(client, five["id"]) == 1


def test_an_exclusive_code_refuses_company(service: Service) -> None:
    client, _ = service
    campaign(client, "SOLO")  # exclusive by default
    shared = campaign(client, "TEAM", **STACKABLE)
    checked = client.post("/v1/validations", json=order("TEAM", "SOLO")).json()
    assert checked["valid"] is False and checked["discount"] == 0
    assert {c["refusal"]["code"] for c in checked["codes"]} == {"not_stackable"}
    refused = client.post(
        "/v1/redemptions", json=order("TEAM", "SOLO"), headers={"Idempotency-Key": "o2"}
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "not_stackable"
    assert usage(client, shared["id"]) == 0
    twice = client.post("/v1/validations", json=order("TEAM", "team"))
    assert twice.status_code == 422 and twice.json()["error"]["field"] == "codes"


def test_a_refused_later_code_reverses_the_earlier_ones(service: Service) -> None:
    client, _ = service
    first = campaign(client, "EARLY", **HALF_OFF, **STACKABLE)
    campaign(
        client, "PICKY", eligibility={"stackable": True, "min_amount": 50_000}
    )  # this cart is below its minimum
    for attempt in range(2):
        refused = client.post(
            "/v1/redemptions", json=order("EARLY", "PICKY"), headers={"Idempotency-Key": "o3"}
        )
        assert refused.status_code == 422, (attempt, refused.text)
        assert refused.json()["error"]["code"] == "below_minimum"
        assert usage(client, first["id"]) == 0, "the first code was given back"
    audit = client.get(f"/v1/campaigns/{first['id']}/audit").json()
    reversal = [e for e in audit if e["type"] == "coupon.redemption_reversed.v1"]
    assert len(reversal) == 1 and "PICKY" in reversal[0]["detail"]["reason"]

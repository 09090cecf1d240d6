"""Every endpoint but health and docs needs an API key with the right scope (throttling of
failed checkouts: test_throttle.py)."""

from pathlib import Path

import httpx
import pytest

from services.coupons.settings import Settings
from tests.integration.conftest import create_key

pytestmark = pytest.mark.integration

PERCENT_10 = {"kind": "percent", "percent_off": "10"}


def test_keys_and_scopes(service: tuple[httpx.Client, Path], settings: Settings) -> None:
    admin, _ = service
    anonymous = httpx.Client(base_url=str(admin.base_url))
    checkout = httpx.Client(
        base_url=str(admin.base_url),
        headers={"Authorization": f"Bearer {create_key(settings.database_url, 'checkout')}"},
    )
    analyst = httpx.Client(
        base_url=str(admin.base_url),
        headers={"Authorization": f"Bearer {create_key(settings.database_url, 'analyst')}"},
    )
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200
    assert anonymous.get("/asyncapi.json").status_code == 200
    missing = anonymous.get("/v1/campaigns")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthenticated"
    forged = anonymous.get("/v1/campaigns", headers={"Authorization": "Bearer cpn_admin_forged"})
    assert forged.status_code == 401

    body = {"name": "Scoped", "code": "SCOPED", "discount": PERCENT_10}
    refused = checkout.post("/v1/campaigns", json=body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert analyst.post("/v1/campaigns", json=body).status_code == 403
    created = admin.post("/v1/campaigns", json=body)
    assert created.status_code == 201
    assert analyst.get(f"/v1/campaigns/{created.json()['id']}").status_code == 200
    checkout_body = {
        "code": "SCOPED",
        "customer": {"contact_id": "c1"},
        "cart": {"currency": "EUR", "amount": 1000},
        "order_ref": "o1",
    }
    assert analyst.post("/v1/validations", json=checkout_body).status_code == 403
    redeemed = checkout.post(
        "/v1/redemptions", json=checkout_body, headers={"Idempotency-Key": "o1"}
    )
    assert redeemed.status_code == 201

    trail = analyst.get(f"/v1/campaigns/{created.json()['id']}/audit").json()
    assert [entry["type"] for entry in trail] == [
        "coupon.campaign_defined.v1",
        "coupon.code_redeemed.v1",
    ]
    assert trail[0]["actor"].endswith("(tests-admin)")
    assert trail[1]["actor"].endswith("(tests-checkout)")
    for client in (anonymous, checkout, analyst):
        client.close()

"""Changing a campaign's terms over HTTP: later checkouts follow the new terms, earlier
redemptions stand, and the audit trail says who changed what and why."""

from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import campaign, checkout, eventually

pytestmark = pytest.mark.integration

Service = tuple[httpx.Client, Path]


def redeem(client: httpx.Client, code: str, contact: str) -> httpx.Response:
    return client.post(
        "/v1/redemptions", json=checkout(code, contact), headers={"Idempotency-Key": contact}
    )


def test_new_limits_apply_to_later_redemptions_and_the_audit_says_why(service: Service) -> None:
    client, _ = service
    created = campaign(client, "TUNED", limits={"max_redemptions": 5, "per_contact": 1})
    assert redeem(client, "TUNED", "ann").status_code == 201
    assert redeem(client, "TUNED", "bob").status_code == 201

    changed = client.patch(
        f"/v1/campaigns/{created['id']}",
        json={"limits": {"max_redemptions": 2}, "name": "Tuned", "reason": "budget cut"},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["name"] == "Tuned"
    assert body["limits"] == {
        "max_redemptions": 2,
        "per_contact": 1,
        "per_code": None,
        "budget": None,
        "reservation_ttl_s": 900,
        "codes_low_at": None,
        "codes_top_up": None,
    }
    assert body["discount"] == created["discount"], "the discount never changes"

    refused = redeem(client, "TUNED", "cid")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "exhausted"
    assert client.get(f"/v1/campaigns/{created['id']}").json()["usage"]["redemptions"] == 2
    usage = eventually(
        lambda: client.get(f"/v1/campaigns/{created['id']}/usage").json(),
        lambda u: u["max_redemptions"] == 2 and u["refusals"],
    )
    assert (usage["max_redemptions"], usage["remaining"]) == (2, 0), "the usage read model too"

    audit = client.get(f"/v1/campaigns/{created['id']}/audit").json()
    update = next(e for e in audit if e["type"] == "coupon.campaign_updated.v1")
    assert update["detail"]["reason"] == "budget cut"
    assert update["detail"]["limits"]["max_redemptions"] == 2
    assert update["actor"], "who changed it"


def test_bad_updates_are_refused_with_their_reason(service: Service) -> None:
    client, _ = service
    created = campaign(client, "FIXED")
    url = f"/v1/campaigns/{created['id']}"
    no_reason = client.patch(url, json={"name": "Other"})
    assert no_reason.status_code == 422
    assert no_reason.json()["error"]["field"] == "reason"
    late_start = client.patch(
        url,
        json={"validity": {"starts_at": "2190-01-01T00:00:00Z"}, "reason": "postpone"},
    )
    assert late_start.status_code == 422
    assert late_start.json()["error"]["code"] == "invalid_terms"
    assert client.post(f"{url}/status", json={"status": "ended"}).status_code == 200
    ended = client.patch(url, json={"name": "Too late", "reason": "rename"})
    assert ended.status_code == 409 and ended.json()["error"]["code"] == "ended"
    unknown = client.patch("/v1/campaigns/nope", json={"name": "x", "reason": "y"})
    assert unknown.status_code == 404

"""`GET /v1/contacts/{id}/coupons` pages through a contact's history with `limit` and `cursor`,
like the other lists: every row once, in order, and a clear error for a cursor it never gave."""

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

Service = tuple[httpx.Client, Path]


def pages(client: httpx.Client, contact: str, limit: int) -> list[dict[str, Any]]:
    """Every page, following `next_cursor` until it is null."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        page = client.get(f"/v1/contacts/{contact}/coupons", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) <= limit
        found.extend(body["data"])
        if body["next_cursor"] is None:
            return found
        params["cursor"] = body["next_cursor"]


def test_a_contacts_coupons_page_by_cursor(service: Service) -> None:
    client, _ = service
    created = client.post(
        "/v1/campaigns",
        json={
            "name": "Paged",
            "code": "PAGED",
            "discount": {"kind": "amount", "amount_off": 100, "currency": "EUR"},
        },
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    for n in range(5):
        sent = client.post(
            f"/v1/campaigns/{cid}/distributions",
            json={"contacts": [{"contact_id": "dee"}], "channel": "email", "source_ref": f"s{n}"},
        )
        assert sent.status_code == 200, sent.text

    everything = eventually(
        lambda: client.get("/v1/contacts/dee/coupons").json(), lambda b: len(b["data"]) == 5
    )
    assert everything["next_cursor"] is None
    assert [r["source_ref"] for r in everything["data"]] == [f"s{n}" for n in range(5)]
    assert pages(client, "dee", 2) == everything["data"]
    assert pages(client, "dee", 5) == everything["data"]

    first = client.get("/v1/contacts/dee/coupons", params={"limit": 2}).json()
    elsewhere = client.get("/v1/contacts/eve/coupons", params={"cursor": first["next_cursor"]})
    assert elsewhere.status_code == 422
    assert elsewhere.json()["error"]["code"] == "invalid_cursor"
    bogus = client.get("/v1/contacts/dee/coupons", params={"cursor": "not-a-cursor"})
    assert (bogus.status_code, bogus.json()["error"]["code"]) == (422, "invalid_cursor")
    assert bogus.json()["error"]["field"] == "cursor"
    too_many = client.get("/v1/contacts/dee/coupons", params={"limit": 1001})
    assert (too_many.status_code, too_many.json()["error"]["code"]) == (422, "invalid_request")

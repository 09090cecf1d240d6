"""Contacts and live segments end to end: `coupons serve` as a real process on real Kafka and
PostgreSQL. Events in over HTTP -> profiles -> live membership (events and timers) ->
entered/left messages on the public topic."""

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.topics import declare
from services.coupons.settings import Settings
from tests.integration.conftest import create_key
from tests.integration.helpers import messages_on
from tests.integration.test_dashboard_sign_in import signed_in

pytestmark = pytest.mark.integration
DAY = 86400


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def event(
    i: str, contact: str, at: float, type_: str = "contact.updated", **traits: Any
) -> dict[str, Any]:
    return {"id": i, "type": type_, "contact_id": contact, "occurred_at": iso(at), "traits": traits}


async def membership_messages(
    settings: Settings, expect: int, within_s: float = 30
) -> list[dict[str, Any]]:
    """The messages on the public membership topic, once `expect` arrived."""
    topic = declare(settings.topic_prefix, settings.partitions).segment_membership.name
    found = await messages_on(settings, topic, expect, within_s)
    return [{**value, "key": key.decode()} for key, value in found]


def wait_for(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_events_make_profiles_and_a_live_segment_publishes_entered_and_left(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    client, _ = service
    defined = client.post(
        "/v1/segments",
        json={
            "id": "pro-trials",
            "name": "Pro trials",
            "condition": {
                "and": [
                    {"==": [{"var": "traits.plan"}, "pro"]},
                    {"did_event": {"type": "page.viewed", "where": {"path": "/pricing"}}},
                ]
            },
        },
    )
    assert defined.status_code == 201, defined.text
    now = time.time()
    batch = [
        event("e1", "ann", now - 10, plan="pro"),
        event("e4", "ann", now - 100, plan="free"),  # older: never overwrites "pro"
        {**event("e2", "ann", now - 5, "page.viewed"), "properties": {"path": "/pricing"}},
        event("e3", "bob", now - 10, plan="pro"),
    ]
    for _ in range(3):  # the same ids again: the effect of one
        posted = client.post("/v1/contact-events", json={"events": batch})
        assert posted.status_code == 202, posted.text
    profile = wait_for(
        lambda: (r := client.get("/v1/contacts/ann")).status_code == 200 and r.json()
    )
    profile = wait_for(lambda: (p := client.get("/v1/contacts/ann").json())["segments"] and p)
    assert profile["traits"]["plan"]["value"] == "pro"
    assert profile["traits"]["plan"]["set_by"] == "e1"
    assert [s["segment_id"] for s in profile["segments"]] == ["pro-trials"]
    assert {e["event"]: e["count"] for e in profile["events"]}["page.viewed"] == 1
    assert client.get("/v1/contacts/bob").json()["segments"] == []

    client.post("/v1/contact-events", json={"events": [event("e5", "ann", now, plan="team")]})
    messages = asyncio.run(membership_messages(settings, 2))
    assert [(m["type"], m["contact_id"], m["cause"]) for m in messages] == [
        ("contact.entered_segment.v1", "ann", "e2"),
        ("contact.left_segment.v1", "ann", "e5"),
    ]
    assert all(m["key"] == "ann" and m["segment_version"] == 1 for m in messages)
    assert client.get("/v1/segments/pro-trials").json()["size"] == 0


def test_time_alone_moves_a_contact_in_and_out_to_the_second(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    client, _ = service
    client.post(
        "/v1/segments",
        json={
            "id": "ending",
            "name": "Trial ends within 5 s",
            "condition": {"within_next": ["traits.trial_ends_at", 5]},
        },
    ).raise_for_status()
    ends = int(time.time()) + 9  # in the segment from ends - 5, out from ends + 1
    client.post(
        "/v1/contact-events",
        json={"events": [event("t1", "cat", time.time(), trial_ends_at=iso(ends))]},
    ).raise_for_status()
    messages = asyncio.run(membership_messages(settings, 2, within_s=60))
    assert [(m["type"], m["cause"]) for m in messages] == [
        ("contact.entered_segment.v1", f"timer:{ends - 5}"),
        ("contact.left_segment.v1", f"timer:{ends + 1}"),
    ]
    entered, left = (datetime.fromisoformat(m["at"]).timestamp() for m in messages)
    assert entered >= ends - 5 and left >= ends + 1  # never early


def test_bad_conditions_and_bad_events_get_clear_errors(service: tuple[httpx.Client, Path]) -> None:
    client, _ = service
    bad = client.post(
        "/v1/segments",
        json={
            "name": "x",
            "condition": {"and": [{"==": [1, 1]}, {"within_next": ["traits.t", "soon"]}]},
        },
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_condition"
    assert bad.json()["error"]["field"] == "condition/and/1/within_next/1"
    good = event("g1", "dan", time.time())
    refused = client.post(
        "/v1/contact-events",
        json={"events": [good, {**good, "id": "g2", "occurred_at": "yesterday"}]},
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "events.1.occurred_at"
    assert client.get("/v1/contacts/dan").status_code == 404  # nothing of the batch appended
    preview = client.post("/v1/segments/preview", json={"condition": {"frob": 1}})
    assert preview.json()["error"]["field"] == "condition/frob"


def test_a_segment_restricted_campaign_refuses_a_non_member_and_serves_a_member(
    service: tuple[httpx.Client, Path],
) -> None:
    client, _ = service
    client.post(
        "/v1/segments",
        json={"id": "vip", "name": "VIP", "condition": {">=": [{"var": "traits.score"}, 50]}},
    ).raise_for_status()
    created = client.post(
        "/v1/campaigns",
        json={
            "name": "VIP only",
            "code": "VIP10",
            "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
            "eligibility": {"segments": ["vip"], "excluded_segments": ["churned"]},
        },
    )
    assert created.status_code == 201, created.text
    now = time.time()
    client.post(
        "/v1/contact-events",
        json={"events": [event("v1", "eve", now, score=80), event("v2", "fay", now, score=10)]},
    ).raise_for_status()
    wait_for(lambda: client.get("/v1/contacts/eve").json().get("segments"))
    wait_for(lambda: client.get("/v1/contacts/fay").status_code == 200)

    def redeem(contact: str) -> httpx.Response:
        body = {
            "code": "VIP10",
            "customer": {"contact_id": contact},
            "cart": {"currency": "EUR", "amount": 2000},
            "order_ref": f"order-{contact}",
        }
        return client.post("/v1/redemptions", json=body, headers={"Idempotency-Key": contact})

    refused = redeem("fay")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "not_in_segment"
    client.post(
        "/v1/segments",
        json={
            "id": "recent-redeemers",
            "name": "Redeemed in the last 90 days",
            "condition": {"less_than_ago": ["coupons.last_redeemed_at", 90 * DAY]},
        },
    ).raise_for_status()
    served = redeem("eve")
    assert served.status_code == 201, served.text
    assert served.json()["discount"] == 500
    # the redemption feeds back into the profile, and into segments
    profile = wait_for(
        lambda: (p := client.get("/v1/contacts/eve").json())["coupons"]["redeemed"] and p
    )
    assert profile["coupons"]["discount"] == 500 and profile["coupons"]["revenue"] == 1500
    wait_for(lambda: len(client.get("/v1/contacts/eve").json()["segments"]) == 2)


def test_a_static_segment_from_an_uploaded_list_in_chunks(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    client, _ = service
    client.post(
        "/v1/contact-events",
        json={"events": [{**event("s1", "gus", time.time()), "email": "Gus@Example.com"}]},
    ).raise_for_status()
    wait_for(lambda: client.get("/v1/contacts/gus").status_code == 200)
    client.post(
        "/v1/segments", json={"id": "list", "name": "List", "kind": "static"}
    ).raise_for_status()
    csv_headers = {"Content-Type": "text/csv"}
    first = client.post(
        "/v1/segments/list/members", content="contact_id\nhal\nivy\n", headers=csv_headers
    )
    assert first.json() == {"rows": 2, "added": 2, "unmatched": 0}, first.text
    second = client.post(
        "/v1/segments/list/members",
        content="ivy\ngus@example.com\nnobody@example.com\n",
        headers=csv_headers,
    )
    assert second.json() == {"rows": 3, "added": 1, "unmatched": 1}
    members = client.get("/v1/segments/list/members").json()["members"]
    assert [m["contact_id"] for m in members] == ["gus", "hal", "ivy"]
    csv_text = client.get("/v1/segments/list/members", params={"format": "csv"}).text
    assert csv_text.splitlines()[0] == "contact_id,since" and len(csv_text.splitlines()) == 4
    client.post(
        "/v1/segments", json={"id": "live", "name": "Live", "condition": {"exists": "traits.x"}}
    ).raise_for_status()
    refused = client.post("/v1/segments/live/members", content="hal\n", headers=csv_headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "segment_not_static"

    # the dashboard's segment pages: the size, 50 members a page, the CSV with a session
    more = "".join(f"m{n:02}\n" for n in range(50))
    client.post("/v1/segments/list/members", content=more, headers=csv_headers).raise_for_status()
    browser, _ = signed_in(str(client.base_url), create_key(settings.database_url, "analyst"))
    assert '<a href="/segments/list">List</a>' in browser.get("/segments").text
    first = browser.get("/segments/list").text
    assert "<span>Members</span><strong>53</strong>" in first
    shown = re.findall(r'<a href="/contacts/([^"]+)">', first)
    assert shown == ["gus", "hal", "ivy", *(f"m{n:02}" for n in range(47))]
    assert "A static segment" in first
    following = re.search(r'href="(/segments/list\?after=[^"#]+)#members">Next page', first)
    assert following is not None
    second = browser.get(following.group(1).replace("&amp;", "&")).text
    assert re.findall(r'<a href="/contacts/([^"]+)">', second) == ["m47", "m48", "m49"]
    assert "Next page" not in second
    exported = browser.get("/segments/list/members.csv")
    assert exported.status_code == 200 and len(exported.text.splitlines()) == 54
    assert browser.get("/segments/nope").status_code == 404

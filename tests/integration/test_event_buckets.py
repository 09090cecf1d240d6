"""Daily buckets end to end: "at least 3 page views in the last 7 days" over events dated on
several days, through `coupons serve` on real Kafka and PostgreSQL; the profile shows the
buckets; a bad window is refused with its path."""

import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_segments import event, wait_for

pytestmark = pytest.mark.integration
DAY = 86400


def test_a_segment_over_the_last_days_of_events(service: tuple[httpx.Client, Path]) -> None:
    client, _ = service
    bad = client.post(
        "/v1/segments",
        json={"name": "x", "condition": {"did_event": {"type": "page.viewed", "in_last_days": 91}}},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "condition/did_event/in_last_days"
    client.post(
        "/v1/segments",
        json={
            "id": "keen",
            "name": "Viewed 3 times in 7 days",
            "condition": {"did_event": {"type": "page.viewed", "at_least": 3, "in_last_days": 7}},
        },
    ).raise_for_status()
    now = time.time()
    views = {
        "eve": [now - 100 * DAY, now - 2 * DAY, now - DAY, now],  # 3 in the window
        "fay": [now - 8 * DAY, now - 9 * DAY, now],  # 3 in all, 1 in the window
    }
    batch = [
        event(f"{who}{n}", who, at, "page.viewed")
        for who, times in views.items()
        for n, at in enumerate(times)
    ]
    client.post("/v1/contact-events", json={"events": batch}).raise_for_status()
    eve = wait_for(lambda: (p := client.get("/v1/contacts/eve").json()).get("segments") and p)
    assert [s["segment_id"] for s in eve["segments"]] == ["keen"]
    (viewed,) = eve["events"]
    assert viewed["count"] == 4
    assert sum(d["count"] for d in viewed["days"]) == 3  # the day 100 days back is dropped
    wait_for(lambda: client.get("/v1/contacts/fay").status_code == 200)
    assert client.get("/v1/contacts/fay").json()["segments"] == []
    assert client.get("/v1/segments/keen").json()["size"] == 1

"""Automations end to end: `coupons serve` as a real process on real Kafka and PostgreSQL.
Lifecycle events in over HTTP -> a trigger fires in the contacts transaction -> the sender
distributes through the campaign's decider -> `coupon.issued.v1` on the public topic."""

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.topics import declare
from services.coupons.settings import Settings
from tests.integration.conftest import ServiceFactory, create_key
from tests.integration.helpers import campaign, eventually, kill_serving, messages_on
from tests.integration.test_dashboard_sign_in import signed_in

pytestmark = pytest.mark.integration
DAY = 86400


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def event(
    i: str, contact: str, type_: str, at: float | None = None, **traits: Any
) -> dict[str, Any]:
    return {
        "id": i,
        "type": type_,
        "contact_id": contact,
        "email": f"{contact}@example.com",
        "occurred_at": iso(time.time() if at is None else at),
        "traits": traits,
    }


def automate(client: httpx.Client, **body: Any) -> dict[str, Any]:
    made = client.post("/v1/automations", json={"status": "active", **body})
    assert made.status_code == 201, made.text
    return dict(made.json())


def runs_of(client: httpx.Client, automation_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/v1/automations/{automation_id}/runs").json()["runs"])


def settled(runs: list[dict[str, Any]]) -> bool:
    return bool(runs) and all(r["status"] not in ("scheduled", "sending") for r in runs)


async def issued(settings: Settings, expect: int, within_s: float = 30) -> list[dict[str, Any]]:
    """The coupons announced on the public `coupons.issued.v1` topic."""
    topic = declare(settings.topic_prefix, settings.partitions).issued.name
    return [value["data"] for _, value in await messages_on(settings, topic, expect, within_s)]


def test_an_event_trigger_with_a_condition_sends_one_code_to_the_matching_contact(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    client, _ = service
    automation = automate(
        client,
        id="trial-ending",
        name="Trial ending, engaged",
        campaign_id=campaign(client, "TRIALX")["id"],
        trigger={"kind": "event", "event_type": "trial.will_end"},
        condition={">": [{"var": "traits.engagement_score"}, 50]},
        channel="sequence",
        source_ref="seq-trial-end",
    )
    assert automation["version"] == 1 and automation["status"] == "active"
    batch = [
        event("p1", "ann", "contact.updated", engagement_score=62),
        event("p2", "bob", "contact.updated", engagement_score=10),
        event("t1", "ann", "trial.will_end"),
        event("t2", "bob", "trial.will_end"),
        event("v1", "cy", "page.viewed", engagement_score=99),  # no trigger
    ]
    for _ in range(5):  # delivered five times: the effect of one
        assert client.post("/v1/contact-events", json={"events": batch}).status_code == 202
    runs = eventually(lambda: runs_of(client, "trial-ending"), lambda r: len(r) == 2 and settled(r))
    outcome = {r["contact_id"]: (r["status"], r["reason"]) for r in runs}
    assert outcome == {"ann": ("sent", None), "bob": ("refused", "condition_false")}

    messages = asyncio.run(issued(settings, 1))
    assert [(m["contact_id"], m["code"], m["channel"], m["source_ref"]) for m in messages] == [
        ("ann", "TRIALX", "sequence", "seq-trial-end")
    ]
    assert messages[0]["distribution_id"] == next(r["id"] for r in runs if r["contact_id"] == "ann")

    history = client.get("/v1/contacts/ann/automation-runs").json()
    assert [(h["source_id"], h["source_version"], h["cause"], h["code"]) for h in history] == [
        ("trial-ending", 1, "t1", "TRIALX")
    ]
    checks = client.post("/v1/automations/trial-ending/dry-run", json={"contact_id": "bob"}).json()
    assert checks["would_send"] is False and checks["reason"] == "condition_false"
    assert [c["part"] for c in checks["checks"]] == ["automation", "campaign", "condition"]
    again = client.post("/v1/automations/trial-ending/dry-run", json={"contact_id": "ann"}).json()
    assert again["reason"] == "frequency_capped"  # once per contact by default

    browser, _ = signed_in(str(client.base_url), create_key(settings.database_url, "analyst"))
    listed = browser.get("/automations").text
    assert 'href="/automations/trial-ending"' in listed and "Trial ending, engaged" in listed
    page = browser.get("/automations/trial-ending").text
    assert "<code>condition_false</code>" in page and "<code>TRIALX</code>" in page
    assert "seq-trial-end" in page and "No lift yet" in page
    contact_page = browser.get("/contacts/ann").text
    assert 'href="/automations/trial-ending"' in contact_page
    assert "engagement_score" in contact_page and "trial.will_end" in contact_page

    stats = client.get("/v1/automations/trial-ending/stats").json()
    assert stats["triggered"] == 2 and stats["by_status"] == {"sent": 1, "refused": 1}
    assert stats["refused"] == {"condition_false": 1}


def test_a_moment_trigger_fires_on_time_without_an_event_across_a_kill(
    start_service: ServiceFactory, settings: Settings
) -> None:
    client, _ = start_service()
    target = campaign(client, "MOMENT")
    automate(
        client,
        id="three-days-before",
        name="3 days before the trial ends",
        campaign_id=target["id"],
        trigger={"kind": "moment", "trait": "trial_ends_at", "offset_s": -3 * DAY},
    )
    ends = time.time() + 3 * DAY + 30  # the moment: 30 s from now, after the restart
    client.post(
        "/v1/contact-events",
        json={"events": [event("s1", "dee", "trial.started", trial_ends_at=iso(ends))]},
    )
    eventually(lambda: client.get("/v1/contacts/dee").status_code, lambda s: s == 200)
    assert runs_of(client, "three-days-before") == []
    kill_serving(client)  # the timer is a row: it survives
    client, _ = start_service()
    assert time.time() < ends - 3 * DAY, "restarted too slowly for this test"
    assert runs_of(client, "three-days-before") == []
    runs = eventually(lambda: runs_of(client, "three-days-before"), settled, timeout_s=60)
    assert [(r["contact_id"], r["status"]) for r in runs] == [("dee", "sent")]
    fired_at = datetime.fromisoformat(runs[0]["triggered_at"]).timestamp()
    assert ends - 3 * DAY - 1 <= fired_at <= ends - 3 * DAY + 3  # on time, to the second


def test_a_frequency_cap_holds_under_a_thousand_concurrent_triggers_on_two_replicas(
    start_service: ServiceFactory, settings: Settings
) -> None:
    first, _ = start_service()
    second, _ = start_service()
    target = campaign(first, "CAPPED")
    for n in (1, 2):  # repeats allowed per automation: only the global cap (1 a month) holds
        automate(
            first,
            id=f"milestone-{n}",
            name=f"Milestone {n}",
            campaign_id=target["id"],
            trigger={"kind": "event", "event_type": "usage.milestone_reached"},
            limits={"per_contact": None},
        )
    events = [event(f"m{i}", "eve", "usage.milestone_reached") for i in range(500)]
    with ThreadPoolExecutor(8) as pool:
        posted = pool.map(
            lambda i: (first, second)[i % 2].post(
                "/v1/contact-events", json={"events": events[i * 50 : (i + 1) * 50]}
            ),
            range(10),
        )
        assert {p.status_code for p in posted} == {202}

    def counts() -> dict[str, int]:
        total: dict[str, int] = {}
        for n in (1, 2):
            stats = first.get(f"/v1/automations/milestone-{n}/stats").json()
            for status, count in stats["by_status"].items():
                total[status] = total.get(status, 0) + count
        return total

    found = eventually(
        counts, lambda c: sum(c.values()) == 1000 and set(c) <= {"sent", "refused"}, 90
    )
    assert found == {"sent": 1, "refused": 999}
    history = first.get("/v1/contacts/eve/automation-runs").json()
    assert {h["reason"] for h in history if h["status"] == "refused"} == {"frequency_capped"}
    read = f"/v1/campaigns/{target['id']}"
    usage = eventually(lambda: first.get(read).json()["usage"], lambda u: u["distributed"] >= 1)
    assert usage["distributed"] == 1


def test_a_broadcast_to_ten_thousand_members_resumes_after_a_kill_and_sends_each_once(
    start_service: ServiceFactory, settings: Settings
) -> None:
    client, _ = start_service()
    target = campaign(client, "LAUNCH")
    client.post("/v1/segments", json={"id": "launch", "name": "Launch list", "kind": "static"})
    members = "contact_id\n" + "\n".join(f"c{i:05d}" for i in range(10_000)) + "\n"
    uploaded = client.post(
        "/v1/segments/launch/members", content=members, headers={"Content-Type": "text/csv"}
    )
    assert uploaded.json()["added"] == 10_000, uploaded.text
    body = {"campaign_id": target["id"], "segment_id": "launch", "source_ref": "launch-mail"}
    made = client.post("/v1/broadcasts", json=body, headers={"Idempotency-Key": "launch-1"})
    assert made.status_code == 202, made.text
    again = client.post("/v1/broadcasts", json=body, headers={"Idempotency-Key": "launch-1"})
    assert again.json()["id"] == made.json()["id"]  # the same broadcast, not a second
    path = f"/v1/broadcasts/{made.json()['id']}"
    progress = eventually(lambda: client.get(path).json()["progress"]["done"], lambda d: d >= 500)
    assert progress < 10_000, "finished before the kill: nothing resumed"
    kill_serving(client)
    client, _ = start_service()
    final = eventually(lambda: client.get(path).json(), lambda b: b["status"] == "done", 300)
    assert final["total"] == 10_000
    assert final["progress"]["by_status"] == {"sent": 10_000}, final
    assert client.post(f"{path}/cancel").json()["error"]["code"] == "broadcast_started"
    announced = asyncio.run(issued(settings, 10_000, within_s=120))
    assert len(announced) == 10_000  # each member once, whatever was sent twice
    assert len({m["contact_id"] for m in announced}) == 10_000


def test_definitions_are_checked_versioned_and_audited(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    client, _ = service
    target = campaign(client, "AUDITED")
    trigger = {"kind": "entered_segment", "segment_id": "nowhere"}
    body = {"name": "n", "campaign_id": target["id"], "trigger": trigger}
    refused = client.post("/v1/automations", json=body)
    assert refused.status_code == 422
    assert refused.json()["error"] == {
        "code": "segment_not_found",
        "message": "no segment nowhere",
        "field": "trigger.segment_id",
    }
    missing = client.post("/v1/automations", json={**body, "campaign_id": "nope"})
    assert missing.json()["error"]["code"] == "campaign_not_found"
    bad = client.post(
        "/v1/automations",
        json={**body, "trigger": {"kind": "event", "event_type": "x"}, "condition": {"?": 1}},
    )
    assert bad.json()["error"]["code"] == "invalid_condition"
    out_of_range = client.post(
        "/v1/automations",
        json={**body, "trigger": {"kind": "event", "event_type": "x"}, "holdout_percent": 95},
    )
    assert out_of_range.json()["error"]["code"] == "invalid_request"

    made = client.post(
        "/v1/automations",
        json={**body, "id": "audited", "trigger": {"kind": "event", "event_type": "x"}},
    ).json()
    assert (made["status"], made["version"], made["delay_s"], made["limits"]) == (
        "draft",
        1,
        0,
        {"per_contact": 1, "cooldown_s": None},
    )
    again = {**body, "id": "audited", "trigger": {"kind": "event", "event_type": "y"}}
    assert client.post("/v1/automations", json=again).json()["error"]["code"] == (
        "automation_exists"
    )
    changed = client.patch("/v1/automations/audited", json={"delay_s": 3600, "source_ref": "s"})
    assert (changed.json()["version"], changed.json()["delay_s"]) == (2, 3600)
    assert changed.json()["trigger"] == {"kind": "event", "event_type": "x"}
    for status, code in (("paused", 409), ("active", 200), ("paused", 200), ("archived", 200)):
        moved = client.post("/v1/automations/audited/status", json={"status": status})
        assert moved.status_code == code, moved.text
    assert client.patch("/v1/automations/audited", json={"name": "m"}).status_code == 409
    trail = client.get("/v1/automations/audited/versions").json()
    assert [(v["version"], v["status"]) for v in trail] == [
        (1, "draft"),
        (2, "draft"),
        (3, "active"),
        (4, "paused"),
        (5, "archived"),
    ]
    assert all(v["actor"] for v in trail)
    dry = client.post("/v1/automations/audited/dry-run", json={"contact_id": "zed"}).json()
    assert (dry["reason"], dry["known_contact"]) == ("automation_inactive", False)
    assert client.get("/v1/automations?status=archived").json()[0]["id"] == "audited"
    assert client.get("/v1/automations/none").json()["error"]["code"] == "automation_not_found"


def generate(client: httpx.Client, campaign_id: str, count: int) -> None:
    made = client.post(f"/v1/campaigns/{campaign_id}/code-batches", json={"count": count})
    assert made.status_code == 202, made.text
    path = f"/v1/code-batches/{made.json()['id']}"
    assert eventually(lambda: client.get(path).json()["status"], lambda s: s == "done") == "done"


def issued_codes(client: httpx.Client, campaign_id: str) -> int:
    return int(client.get(f"/v1/campaigns/{campaign_id}/usage").json()["issued"])


def test_running_low_tops_up_and_a_trigger_refused_for_want_of_codes_is_sent_on_retry(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    client, _ = service
    unique = {"name": "Stock", "discount": {"kind": "amount", "amount_off": 100, "currency": "EUR"}}
    topping = client.post(
        "/v1/campaigns",
        json={**unique, "limits": {"codes_low_at": 1, "codes_top_up": 4}},
    ).json()["id"]
    generate(client, topping, 2)
    scarce = client.post("/v1/campaigns", json=unique).json()["id"]
    generate(client, scarce, 1)
    for campaign_id, name in ((topping, "topping"), (scarce, "scarce")):
        automate(
            client,
            id=name,
            name=name,
            campaign_id=campaign_id,
            trigger={"kind": "event", "event_type": f"{name}.now"},
        )
    client.post("/v1/contact-events", json={"events": [event("k1", "kim", "topping.now")]})
    # one of 2 codes given: 1 left, the low mark: 4 more are generated with the same pattern
    assert eventually(lambda: issued_codes(client, topping), lambda n: n == 6) == 6
    audit = client.get(f"/v1/campaigns/{topping}/audit").json()
    assert "coupon.codes_low.v1" in json.dumps(audit)

    both = [event("s1", "lou", "scarce.now"), event("s2", "max", "scarce.now")]
    client.post("/v1/contact-events", json={"events": both})
    runs = eventually(lambda: runs_of(client, "scarce"), lambda r: len(r) == 2 and settled(r))
    assert sorted((r["status"], r["reason"]) for r in runs) == [
        ("refused", "no_codes_left"),
        ("sent", None),
    ]
    generate(client, scarce, 1)
    assert client.post("/v1/automations/scarce/retry").json() == {"rescheduled": 1}
    runs = eventually(
        lambda: runs_of(client, "scarce"), lambda r: [x["status"] for x in r] == ["sent"] * 2
    )
    codes = {
        h["code"]
        for c in ("lou", "max")
        for h in client.get(f"/v1/contacts/{c}/automation-runs").json()
    }
    assert len(codes) == 2  # two contacts, two unique codes

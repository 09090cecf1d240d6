"""Reservations through HTTP on the real broker and database: caps stay exact with
reservations and redemptions racing, a reservation made on one replica is redeemed on
another, and expiry releases a hold on time with no request, across a kill -9."""

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import RELAXED, ServiceFactory
from tests.integration.helpers import campaign, checkout, codes_of, kill_serving

pytestmark = pytest.mark.integration


def shopper(contact: str, amount: int = 2000) -> dict[str, Any]:
    return {
        "customer": {"contact_id": contact},
        "cart": {"currency": "EUR", "amount": amount},
    }


def hold(client: httpx.Client, code: str, contact: str, **extra: Any) -> httpx.Response:
    body = {"code": code, **shopper(contact), **extra}
    return client.post("/v1/reservations", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})


def redeem_held(client: httpx.Client, code: str, contact: str, held: str) -> httpx.Response:
    body = {**checkout(code, contact), "reservation_id": held}
    return client.post("/v1/redemptions", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})


def released(client: httpx.Client, held: str, within_s: float) -> float:
    """Seconds until the reservation no longer holds (GET answers 404)."""
    started = time.monotonic()
    while client.get(f"/v1/reservations/{held}").status_code != 404:
        assert time.monotonic() - started < within_s, f"{held} still held after {within_s} s"
        time.sleep(0.05)
    return time.monotonic() - started


async def test_a_thousand_concurrent_reservations_and_redemptions_never_pass_the_cap(
    service: tuple[httpx.Client, Path],
) -> None:
    client, _ = service
    campaign(client, "FLASH100", limits={"max_redemptions": 100, "per_contact": None})
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=str(client.base_url), headers=client.headers, timeout=120, limits=limits
    ) as http:

        async def one(n: int) -> httpx.Response:
            key = {"Idempotency-Key": f"race-{n}"}
            if n % 2:
                body = {"code": "FLASH100", **shopper(f"h{n}")}
                return await http.post("/v1/reservations", json=body, headers=key)
            return await http.post(
                "/v1/redemptions", json=checkout("FLASH100", f"r{n}"), headers=key
            )

        answers = await asyncio.gather(*(one(n) for n in range(1000)))
    counts = codes_of(answers)
    assert counts.get("accepted") == 100 and counts.get("exhausted") == 900, counts
    holds = [a.json() for a in answers if a.status_code == 201 and "reservation_id" in a.json()]
    # half the holds are redeemed, half released: the released capacity goes to new shoppers
    for i, held in enumerate(holds):
        if i % 2:
            assert client.delete(f"/v1/reservations/{held['reservation_id']}").status_code == 200
        else:
            answer = redeem_held(client, "FLASH100", held["contact_id"], held["reservation_id"])
            assert answer.status_code == 201, answer.text
            assert answer.json()["discount"] == held["discount"]
    freed = len(holds) // 2
    later = [
        client.post(
            "/v1/redemptions",
            json=checkout("FLASH100", f"late{n}"),
            headers={"Idempotency-Key": f"late-{n}"},
        )
        for n in range(freed + 5)
    ]
    assert codes_of(later) == {"accepted": freed, "exhausted": 5}
    usage = client.get("/v1/campaigns").json()["data"][0]["usage"]
    assert usage["redemptions"] == 100, usage


def test_expiry_releases_a_hold_on_time_without_a_request(
    service: tuple[httpx.Client, Path],
) -> None:
    client, log = service
    campaign(client, "EXPIRE1", limits={"max_redemptions": 1, "per_contact": None})
    held = hold(client, "EXPIRE1", "ann", ttl_s=2)
    assert held.status_code == 201, held.text
    expires_at = held.json()["expires_at"]
    blocked = client.post(
        "/v1/redemptions", json=checkout("EXPIRE1", "bob"), headers={"Idempotency-Key": "bob-1"}
    )
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "exhausted"
    assert released(client, held.json()["reservation_id"], within_s=10) < 4  # 2 s, then on time
    late = redeem_held(client, "EXPIRE1", "ann", held.json()["reservation_id"])
    assert late.status_code in (404, 409), late.text  # gone: expired and released
    freed = client.post(
        "/v1/redemptions", json=checkout("EXPIRE1", "bob"), headers={"Idempotency-Key": "bob-2"}
    )
    assert freed.status_code == 201, freed.text
    assert '"decider.timer_fired"' in log.read_text(), expires_at


def test_a_hold_made_on_one_replica_is_redeemed_on_another_and_expires_across_a_kill(
    start_service: ServiceFactory,
) -> None:
    first, _ = start_service(**RELAXED)
    second, _ = start_service(**RELAXED)
    campaign(first, "TWOREP", limits={"max_redemptions": 2, "per_contact": None})
    made = hold(first, "TWOREP", "ann").json()
    redeemed = redeem_held(second, "TWOREP", "ann", made["reservation_id"])
    assert redeemed.status_code == 201, redeemed.text
    # a short hold, then every process that could own its partition is killed mid-TTL
    short = hold(second, "TWOREP", "bob", ttl_s=4)
    assert short.status_code == 201, short.text
    kill_serving(first)
    kill_serving(second)
    third, _ = start_service(**RELAXED)
    took = released(third, short.json()["reservation_id"], within_s=60)
    assert took < 60
    freed = third.post(
        "/v1/redemptions", json=checkout("TWOREP", "eve"), headers={"Idempotency-Key": "eve-1"}
    )
    assert freed.status_code == 201, freed.text

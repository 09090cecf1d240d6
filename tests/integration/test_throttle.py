"""Guessing is throttled per shopper and per key, shared by replicas, through HTTP on the
real broker and database: a flash sale and other shoppers' typos throttle no one, a guesser
is throttled after its allowance on any replica, and X-Forwarded-For is believed only from
configured proxies."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ServiceFactory
from tests.integration.test_checkout import campaign, checkout, codes_of, redeem_all

pytestmark = pytest.mark.integration

STRICT = {  # low limits, so that the old throttle (per key and address) would bite
    "COUPONS_THROTTLE_FAILURES": "3",
    "COUPONS_THROTTLE_ADDRESS_FAILURES": "8",
    "COUPONS_THROTTLE_KEY_FAILURES": "40",
    "COUPONS_THROTTLE_WINDOW_S": "60",
}


def validate(client: httpx.Client, code: str, contact: str, **headers: str) -> httpx.Response:
    body = checkout(code, contact)
    del body["order_ref"]
    return client.post("/v1/validations", json=body, headers=headers)


def outcome(answer: httpx.Response) -> str:
    """`valid`, the refusal's code, or the error's code."""
    if answer.status_code == 200:
        body: dict[str, Any] = answer.json()
        return "valid" if body["valid"] else str(body["refusal"]["code"])
    return str(answer.json()["error"]["code"])


async def test_a_flash_sale_leaves_every_other_shopper_served(
    start_service: ServiceFactory,
) -> None:
    client, _ = start_service(**STRICT)
    campaign(client, "FLASH20", limits={"max_redemptions": 20, "per_contact": 1})
    campaign(client, "EVERYDAY", limits={"per_contact": None})
    responses = await redeem_all(
        client, [(f"flash-{i}", checkout("FLASH20", f"racer-{i}")) for i in range(200)]
    )
    assert codes_of(responses) == {"accepted": 20, "exhausted": 180}
    assert outcome(validate(client, "EVERYDAY", "racer-7")) == "valid"
    assert outcome(validate(client, "EVERYDAY", "someone-else")) == "valid"
    redeemed = client.post(
        "/v1/redemptions", json=checkout("EVERYDAY", "racer-8"), headers={"Idempotency-Key": "e8"}
    )
    assert redeemed.status_code == 201, redeemed.text


def test_ten_shoppers_typing_wrong_codes_do_not_block_an_eleventh(
    start_service: ServiceFactory,
) -> None:
    client, _ = start_service(**STRICT)
    campaign(client, "SPRING10", limits={"per_contact": None})
    typos = [
        outcome(validate(client, f"SPRNG{i}{j}", f"typist-{i}"))
        for i in range(10)
        for j in range(3)
    ]
    assert typos == ["unknown_code"] * 30  # each typist used their 3 tries; none throttled
    assert outcome(validate(client, "SPRNG", "innocent")) == "unknown_code"
    assert outcome(validate(client, "SPRING10", "innocent")) == "valid"
    redeemed = client.post(
        "/v1/redemptions", json=checkout("SPRING10", "innocent"), headers={"Idempotency-Key": "i"}
    )
    assert redeemed.status_code == 201, redeemed.text
    # and a typist who used up their tries waits, however many codes they now send
    assert outcome(validate(client, "SPRING10", "typist-0")) == "too_many_failures"


def test_one_shopper_guessing_thirty_codes_is_throttled(start_service: ServiceFactory) -> None:
    client, _ = start_service(**STRICT)
    campaign(client, "REAL2026", limits={"per_contact": None})
    answers = [validate(client, f"GUESS{i:02}", "guesser") for i in range(30)]
    assert [outcome(a) for a in answers] == ["unknown_code"] * 3 + ["too_many_failures"] * 27
    assert all(a.status_code == 429 for a in answers[3:])
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 120
    # a redemption is throttled the same way, even with the real code: the guesser waits
    redeem = client.post(
        "/v1/redemptions", json=checkout("REAL2026", "guesser"), headers={"Idempotency-Key": "g"}
    )
    assert redeem.status_code == 429 and "retry-after" in redeem.headers
    assert outcome(validate(client, "REAL2026", "bystander")) == "valid"


def test_the_shoppers_address_and_the_key_have_their_own_ceilings(
    start_service: ServiceFactory,
) -> None:
    """A guesser who invents a new contact for every try is caught by the address the
    merchant forwards, and without one by the key's much higher ceiling."""
    client, _ = start_service(**STRICT)
    campaign(client, "REAL2027", limits={"per_contact": None})
    shopper = {"X-Shopper-Address": "2001:db8:1:2::7"}
    by_address = [
        outcome(validate(client, f"GUESS{i:02}", f"fake-{i}", **{**shopper})) for i in range(10)
    ]
    assert by_address == ["unknown_code"] * 8 + ["too_many_failures"] * 2
    same_network = {"X-Shopper-Address": "2001:db8:1:2::ffff"}  # the same /64
    assert outcome(validate(client, "REAL2027", "fresh", **same_network)) == "too_many_failures"
    assert outcome(validate(client, "REAL2027", "fresh")) == "valid"  # another shopper
    # 8 of the key's 40 are spent; 32 more across invented contacts, then the key waits
    by_key = [outcome(validate(client, f"MORE{i:02}", f"other-{i}")) for i in range(34)]
    assert by_key == ["unknown_code"] * 32 + ["too_many_failures"] * 2
    bad = validate(client, "REAL2027", "x", **{"X-Shopper-Address": "not-an-address"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "header.x-shopper-address"


async def test_two_replicas_share_the_count(start_service: ServiceFactory) -> None:
    """A guesser alternating between two replicas gets no more answers than from one, and
    the block one replica decides holds on the other at once."""
    one, _ = start_service(**{**STRICT, "COUPONS_THROTTLE_FAILURES": "6"})
    two, _ = start_service(**{**STRICT, "COUPONS_THROTTLE_FAILURES": "6"})
    two.headers["Authorization"] = one.headers["Authorization"]  # one key, as a merchant's
    replicas = [one, two]
    answers = [outcome(validate(replicas[i % 2], f"GUESS{i:02}", "roamer")) for i in range(12)]
    assert answers == ["unknown_code"] * 6 + ["too_many_failures"] * 6
    # concurrent guesses on both replicas: still no answer past the allowance
    async with (
        httpx.AsyncClient(base_url=str(one.base_url), headers=one.headers) as a,
        httpx.AsyncClient(base_url=str(two.base_url), headers=two.headers) as b,
    ):
        body = checkout("NOPE", "racer")
        del body["order_ref"]
        raced = await asyncio.gather(
            *(
                (a, b)[i % 2].post("/v1/validations", json={**body, "code": f"RACE{i:02}"})
                for i in range(20)
            )
        )
    assert sorted(outcome(r) for r in raced) == ["too_many_failures"] * 14 + ["unknown_code"] * 6


def _logged_client(log_path: Path, correlation_id: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            if correlation_id in line and '"http.request"' in line:
                return str(json.loads(line)["client"])
        time.sleep(0.1)
    raise AssertionError(f"no http.request line for {correlation_id}")


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    start_service: ServiceFactory,
) -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.9"}
    untrusted, untrusted_log = start_service(**STRICT)
    untrusted.get("/healthz", headers={**spoofed, "X-Correlation-Id": "spoof-1"})
    assert _logged_client(untrusted_log, "spoof-1") == "127.0.0.1"
    # a guesser changing the header on every try gains nothing either
    answers = [
        outcome(validate(untrusted, f"G{i:03}", "spoofer", **{"X-Forwarded-For": f"10.0.0.{i}"}))
        for i in range(5)
    ]
    assert answers == ["unknown_code"] * 3 + ["too_many_failures"] * 2

    behind_proxy, proxied_log = start_service(**STRICT, COUPONS_TRUSTED_PROXIES="127.0.0.1")
    behind_proxy.get("/healthz", headers={**spoofed, "X-Correlation-Id": "proxied-1"})
    assert _logged_client(proxied_log, "proxied-1") == "203.0.113.9"

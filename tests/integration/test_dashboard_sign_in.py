"""Dashboard sign-in over HTTP: an admin or analyst key becomes a session cookie (HttpOnly,
SameSite=Strict) stored in PostgreSQL; a checkout key is refused; sign-out needs the CSRF
token and ends the session; the campaigns page lists what the API created."""

import re
import time
from pathlib import Path

import httpx
import pytest

from services.coupons.settings import Settings
from tests.integration.conftest import create_key

pytestmark = pytest.mark.integration


def signed_in(base_url: str, key: str) -> tuple[httpx.Client, httpx.Response]:
    browser = httpx.Client(base_url=base_url, timeout=30)
    return browser, browser.post("/sign-in", data={"api_key": key})


def test_sign_in_list_and_sign_out(service: tuple[httpx.Client, Path], settings: Settings) -> None:
    api, _ = service
    base = str(api.base_url)
    body = {
        "name": "Dashboard spring sale",
        "code": "DASHSPRING",
        "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
    }
    assert api.post("/v1/campaigns", json=body).status_code == 201

    anonymous = httpx.Client(base_url=base, timeout=30)
    assert anonymous.get("/").headers["location"] == "/sign-in"

    checkout_browser, refused = signed_in(base, create_key(settings.database_url, "checkout"))
    assert refused.status_code == 401 and "cannot sign in" in refused.text
    assert "coupons_session" not in checkout_browser.cookies

    forged = anonymous.post(
        "/sign-in",
        data={"api_key": create_key(settings.database_url, "admin")},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403 and "set-cookie" not in forged.headers

    browser, accepted = signed_in(base, create_key(settings.database_url, "analyst"))
    assert accepted.status_code == 303
    cookie = accepted.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    page = browser.get("/")
    assert page.status_code == 200
    assert "Dashboard spring sale" in page.text
    assert browser.cookies["coupons_session"] not in page.text  # never in the page
    assert "Dashboard spring sale" not in browser.get("/", params={"status": "ended"}).text

    assert browser.post("/sign-out", data={"csrf": "wrong"}).status_code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    assert browser.post("/sign-out", data={"csrf": csrf.group(1)}).status_code == 303
    browser.cookies.set("coupons_session", accepted.cookies["coupons_session"])
    assert browser.get("/").headers["location"] == "/sign-in"  # the session is gone


def test_campaign_page_shows_a_redemption(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    api, _ = service
    body = {
        "name": "Dashboard funnel",
        "code": "DASHFUNNEL",
        "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
    }
    campaign_id = api.post("/v1/campaigns", json=body).json()["id"]
    browser, _ = signed_in(str(api.base_url), create_key(settings.database_url, "admin"))
    before = browser.get(f"/campaigns/{campaign_id}")
    assert before.status_code == 200 and "Dashboard funnel" in before.text
    assert "5.00 EUR" not in before.text

    redeemed = api.post(
        "/v1/redemptions",
        json={
            "code": "DASHFUNNEL",
            "customer": {"contact_id": "c-dash", "email": "c-dash@example.com"},
            "cart": {"currency": "EUR", "amount": 2000},
            "order_ref": "order-dash",
        },
        headers={"Idempotency-Key": "dash-1"},
    )
    assert redeemed.status_code in (200, 201), redeemed.text
    for _ in range(100):  # the ledger projection catches up within a moment
        after = browser.get(f"/campaigns/{campaign_id}").text
        if "15.00 EUR" in after and "1 redeemed</title>" in after:
            break
        time.sleep(0.1)
    assert "15.00 EUR" in after  # net revenue: 20.00 less the 5.00 discount
    assert "5.00 EUR" in after  # discount given
    bars = re.findall(r"<title>([^<]*) redeemed</title>", after)
    assert [b for b in bars if b.endswith(": 1")], bars  # a day's bar shows the redemption
    graph = browser.get("/contacts/c-dash").text
    assert "<code>DASHFUNNEL</code>" in graph and "order-dash" in graph


def form_field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert found is not None, name
    return found.group(1)


def test_admin_pauses_an_analyst_cannot(
    service: tuple[httpx.Client, Path], settings: Settings
) -> None:
    api, _ = service
    body = {
        "name": "Dashboard pause",
        "code": "DASHPAUSE",
        "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
    }
    campaign_id = api.post("/v1/campaigns", json=body).json()["id"]
    page_url = f"/campaigns/{campaign_id}"

    analyst, _ = signed_in(str(api.base_url), create_key(settings.database_url, "analyst"))
    seen = analyst.get(page_url).text
    assert "<button" in seen  # sign-out
    assert "Pause" not in seen and 'method="post" action="/campaigns/' not in seen
    forged = {"csrf": form_field(seen, "csrf"), "status": "paused", "idempotency_key": "x" * 16}
    assert analyst.post(f"{page_url}/status", data=forged).status_code == 403

    admin, _ = signed_in(str(api.base_url), create_key(settings.database_url, "admin"))
    page = admin.get(page_url).text
    pause = {
        "csrf": form_field(page, "csrf"),
        "status": "paused",
        "idempotency_key": form_field(page, "idempotency_key"),
    }
    assert admin.post(f"{page_url}/status", data=pause).status_code == 303
    assert admin.post(f"{page_url}/status", data=pause).status_code == 303  # a double submit
    assert api.get(f"/v1/campaigns/{campaign_id}").json()["status"] == "paused"
    trail = api.get(f"/v1/campaigns/{campaign_id}/audit").json()
    changes = [e for e in trail if "status" in e["type"]]
    assert len(changes) == 1 and "tests-admin" in changes[0]["actor"]
    assert "Resume" in admin.get(page_url).text

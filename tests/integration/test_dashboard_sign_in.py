"""Dashboard sign-in over HTTP: an admin or analyst key becomes a session cookie (HttpOnly,
SameSite=Strict) stored in PostgreSQL; a checkout key is refused; sign-out needs the CSRF
token and ends the session; the campaigns page lists what the API created."""

import re
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

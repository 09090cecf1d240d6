"""The dashboard in a real browser: Playwright driving Debian's headless Chromium against a
real `coupons serve` (one service and one browser for the module, a fresh browser context,
so a fresh cookie jar, per test).

Every test also asserts that no request left 127.0.0.1 (every other host is refused and
recorded) and that the console logged no error, and saves a screenshot of each page it sees
under tests/artifacts/screenshots/ (git-ignored)."""

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright, expect

from services.coupons.store import reconciliations
from services.coupons.stripe.reconcile import Finding, Report
from services.devstack.stack import Endpoints
from tests.integration.conftest import RELAXED, create_key, database_url, free_port
from tests.integration.helpers import checkout
from tests.integration.test_stripe_api import stripe_mock_command

pytestmark = pytest.mark.integration

SCREENSHOTS = Path(__file__).parents[1] / "artifacts" / "screenshots"
WAIT_MS = 60_000
"""Playwright's patience for any one step: a shared, slow machine is not a failure."""


@dataclass
class Service:
    url: str
    api: httpx.AsyncClient  # with an admin key
    database_url: str

    async def key(self, scope: str) -> str:
        return await asyncio.to_thread(create_key, self.database_url, scope)

    async def campaign(self, code: str) -> dict[str, Any]:
        body = {
            "name": f"Campaign {code}",
            "code": code,
            "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
        }
        created = await self.api.post("/v1/campaigns", json=body)
        assert created.status_code == 201, created.text
        return dict(created.json())


async def _database(endpoints: Endpoints, name: str, create: bool) -> None:
    admin = await asyncpg.connect(endpoints.database_url)
    try:
        statement = "CREATE DATABASE" if create else "DROP DATABASE IF EXISTS"
        await admin.execute(f'{statement} "{name}"' + ("" if create else " WITH (FORCE)"))
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def service(
    endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    """One `coupons serve` for the module, on its own database and topics, mirroring to
    stripe-mock (Stripe's own mock server)."""
    suffix = uuid.uuid4().hex[:10]
    name = f"t_{suffix}"
    await _database(endpoints, name, create=True)
    url = database_url(endpoints.database_url, name)
    port, stripe_port = free_port(), free_port()
    stripe = await asyncio.create_subprocess_exec(
        *stripe_mock_command(stripe_port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    log_path = tmp_path_factory.mktemp("dashboard") / "service.log"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "DATABASE_URL": url,
        "COUPONS_TOPIC_PREFIX": f"t{suffix}.",
        "COUPONS_PARTITIONS": "3",
        "COUPONS_PORT": str(port),
        "STRIPE_API_KEY": "sk_test_123",
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        **RELAXED,
    }
    log = await asyncio.to_thread(log_path.open, "w")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.coupons.cli", "serve",
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 90
        while not await _ready(api):
            assert process.returncode is None, await _tail(log_path)
            assert time.monotonic() < deadline, "not ready in 90 s"
            await asyncio.sleep(0.3)
        api.headers["Authorization"] = f"Bearer {await asyncio.to_thread(create_key, url, 'admin')}"
        yield Service(f"http://127.0.0.1:{port}", api, url)
    finally:
        await api.aclose()
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        log.close()
        stripe.terminate()
        await stripe.wait()
        await _database(endpoints, name, create=False)


async def _tail(log_path: Path) -> str:
    return (await asyncio.to_thread(log_path.read_text))[-3000:]


async def _ready(api: httpx.AsyncClient) -> bool:
    try:
        return (await api.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: deploy/install-system-packages installs it"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        yield launched
        await launched.close()


@dataclass
class Watched:
    """A page and what it did that it should not have: requests to another host, console
    errors (apart from the HTTP statuses a test expects, which Chromium logs as errors)."""

    page: Page
    left_host: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    async def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

    def unexpected_console_errors(self) -> list[str]:
        allowed = {
            f"Failed to load resource: the server responded with a status of {s}"
            for s in self.expected_statuses
        }
        return [m for m in self.console_errors if not any(m.startswith(a) for a in allowed)]


@pytest.fixture
async def watched(browser: Browser, service: Service) -> AsyncIterator[Watched]:
    context = await browser.new_context(
        base_url=service.url, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    seen = Watched(page)

    async def only_this_host(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            seen.left_host.append(route.request.url)
            await route.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    await context.route("**/*", only_this_host)
    page.on("console", console)
    page.on("pageerror", lambda error: seen.console_errors.append(f"uncaught: {error}"))
    yield seen
    await context.close()
    assert seen.left_host == [], "requests left 127.0.0.1"
    assert seen.unexpected_console_errors() == [], "console errors"


async def sign_in(watched: Watched, key: str) -> None:
    page = watched.page
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()  # redirected
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def test_admin_creates_a_campaign_then_generates_codes(
    watched: Watched, service: Service
) -> None:
    page = watched.page
    watched.expected_statuses.add(422)  # the form with a field error is a 422
    await sign_in(watched, await service.key("admin"))
    await expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    await watched.shot("campaigns-empty")

    await page.get_by_role("link", name="New campaign").click()
    await page.get_by_label("Name").fill("Browser spring sale")
    await page.get_by_label("Shared code").fill("browser-spring")
    await page.get_by_label("Kind").select_option("percent")
    await page.get_by_label("Percent off").fill("150")
    await page.get_by_label("Currency").fill("EUR")
    await page.get_by_label("Discount budget").fill("100000")
    await page.get_by_role("button", name="Create campaign").click()
    error = page.locator("#discount-percent_off-error")
    await expect(error).to_contain_text("invalid_request")  # the API's own code, beside its field
    await expect(error).to_contain_text("less than or equal to 100")
    await expect(page.get_by_label("Percent off")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Name")).to_have_value("Browser spring sale")  # kept
    await watched.shot("new-campaign-field-error")

    await page.get_by_label("Percent off").fill("20")
    await page.get_by_role("button", name="Create campaign").click()
    await expect(page.get_by_role("heading", name="Browser spring sale")).to_be_visible()
    await expect(page.locator(".hint").first).to_contain_text("BROWSERSPRING")
    campaign_url = page.url

    await page.get_by_role("link", name="Change terms").click()
    await expect(page.get_by_label("Discount budget")).to_have_value("100000")  # current terms
    await page.get_by_label("Per contact").fill("0")
    await page.get_by_label("Why (for the audit trail)").fill("a bigger spring")
    await page.get_by_role("button", name="Change terms").click()
    await expect(page.locator("#limits-per_contact-error")).to_contain_text("invalid_request")
    await watched.shot("terms-field-error")
    await page.get_by_label("Per contact").fill("2")
    await page.get_by_label("Total redemptions").fill("5000")
    await page.get_by_role("button", name="Change terms").click()
    await expect(page).to_have_url(campaign_url)
    await expect(page.locator("#audit ~ table")).to_contain_text("a bigger spring")

    await page.get_by_role("link", name="Campaigns", exact=True).first.click()
    row = page.get_by_role("row").filter(has_text="Browser spring sale")
    await expect(row).to_contain_text("active")
    await expect(row).to_contain_text("1,000.00 EUR")  # the whole budget is left
    await watched.shot("campaigns")

    await page.goto(campaign_url)
    await page.get_by_label("Unique codes to generate").fill("10000")
    await page.get_by_label("Prefix").fill("SPRING-")
    await page.get_by_role("button", name="Generate codes").click()
    batch = page.locator(".batch").first
    await expect(batch.locator("progress")).to_have_attribute("max", "10000")
    await watched.shot("campaign-generating")
    await expect(batch).to_have_attribute("data-status", "done", timeout=180_000)
    await expect(batch.locator("progress")).to_have_attribute("value", "10000")
    await expect(batch).to_contain_text("10,000 of 10,000")

    await page.reload()  # the codes table is rendered with the page
    codes = page.locator("#codes-table tbody tr")
    await expect(codes).to_have_count(50)  # a page of them
    first = await codes.first.locator("code").inner_text()
    assert first.startswith("SPRING")
    await page.get_by_label("Code or holder").fill(first.lower())  # case and '-' are ignored
    await page.get_by_role("button", name="Search codes").click()
    await expect(codes).to_have_count(1)
    await expect(codes.first).to_contain_text(first)
    await watched.shot("campaign-codes")

    campaign_id = campaign_url.rsplit("/", 1)[1]
    given = await service.api.post(
        f"/v1/campaigns/{campaign_id}/distributions",
        json={"contacts": [{"contact_id": "c-holder"}]},
    )
    assert given.status_code == 200, given.text
    (distribution,) = given.json()["distributed"]
    await page.get_by_label("Code or holder").fill("c-holder")
    await page.get_by_role("button", name="Search codes").click()
    await expect(codes).to_have_count(1)
    await expect(codes.first).to_contain_text(distribution["code"])
    await expect(codes.first.get_by_role("link", name="c-holder")).to_be_visible()

    async with page.expect_download() as downloading:
        await page.get_by_role("link", name="Export every code as CSV").click()
    saved = await (await downloading.value).path()
    exported = (await asyncio.to_thread(saved.read_text)).splitlines()
    assert exported[0].startswith("code,") and len(exported) == 10_001


async def _projected(service: Service, campaign_id: str, redeemed: int) -> bool:
    stats = (await service.api.get(f"/v1/campaigns/{campaign_id}/stats")).json()["data"]
    return bool(stats) and stats[0]["redeemed"] == redeemed


async def test_a_redemption_through_the_api_shows_in_the_funnel_and_chart(
    watched: Watched, service: Service
) -> None:
    page = watched.page
    created = await service.campaign("BROWSERFUNNEL")
    await sign_in(watched, await service.key("admin"))
    await page.goto(f"/campaigns/{created['id']}")
    funnel = page.locator(".funnel")
    redeemed_figure = funnel.locator("li", has_text="Redeemed").locator("strong")
    await expect(redeemed_figure).to_have_text("0")
    await expect(
        page.locator("svg.chart rect.bar title").filter(has_text=": 1 redeemed")
    ).to_have_count(0)

    redeemed = await service.api.post(
        "/v1/redemptions",
        json=checkout("BROWSERFUNNEL", "c-browser"),
        headers={"Idempotency-Key": "browser-funnel-1"},
    )
    assert redeemed.status_code in (200, 201), redeemed.text
    deadline = time.monotonic() + 60
    while not await _projected(service, created["id"], redeemed=1):  # the ledger, in a moment
        assert time.monotonic() < deadline, "the redemption never reached the ledger"
        await asyncio.sleep(0.2)
    await page.reload()
    await expect(redeemed_figure).to_have_text("1")
    await expect(funnel).to_contain_text("15.00 EUR")  # net revenue: 20.00 less the 5.00 discount
    bars = page.locator("svg.chart rect.bar title").filter(has_text=": 1 redeemed")
    await expect(bars).to_have_count(1)
    await watched.shot("campaign-redeemed")
    await page.screenshot(path=SCREENSHOTS / "campaign-redeemed-top.png")  # the README's

    await page.get_by_role("button", name="Mirror to Stripe").click()
    mirrored = page.locator("section[aria-labelledby=stripe] .batch").first
    await expect(mirrored).to_have_attribute("data-status", "done", timeout=120_000)
    await expect(mirrored).to_contain_text("1 of 1")  # the shared code's PromotionCode
    await expect(mirrored).to_contain_text("coupon ")

    await page.goto("/contacts/c-browser")
    await expect(page.get_by_role("heading", name="Contact c-browser")).to_be_visible()
    await expect(page.locator("table[aria-labelledby=graph]")).to_contain_text("BROWSERFUNNEL")
    await watched.shot("contact")

    await page.get_by_role("link", name="Operations").click()
    await expect(page.get_by_role("heading", name="Projection lag")).to_be_visible()
    await expect(page.get_by_role("row").filter(has_text="PostgreSQL")).to_contain_text("ok")
    reconciliation = page.locator("section[aria-labelledby=reconciliation]")
    await expect(reconciliation).to_contain_text("No reconciliation has run yet.")
    await _reconciled(service)  # as `coupons stripe reconcile` records a run (test_stripe_api)
    await page.reload()
    await expect(reconciliation).to_contain_text("4 discounted invoices checked, 2 matched")
    findings = reconciliation.get_by_role("row")
    await expect(findings.filter(has_text="in_browser_lost")).to_contain_text("missing")
    await expect(findings.filter(has_text="in_browser_lost")).to_contain_text("yes")
    await expect(findings.filter(has_text="in_browser_changed")).to_contain_text("amount_mismatch")
    await watched.shot("operations")


async def _until(read: Any, holds: Any, what: str) -> Any:
    """Poll an API read until it `holds` (the contacts processor applies in a moment)."""
    deadline = time.monotonic() + 60
    while not holds(value := await read()):
        assert time.monotonic() < deadline, f"{what}: still {value}"
        await asyncio.sleep(0.2)
    return value


async def test_segments_automations_and_a_contact_profile(
    watched: Watched, service: Service
) -> None:
    page, api = watched.page, service.api
    created = await service.campaign("BROWSERTRIAL")
    engaged = {">": [{"var": "traits.engagement_score"}, 50]}
    segment = await api.post(
        "/v1/segments", json={"id": "engaged", "name": "Engaged contacts", "condition": engaged}
    )
    assert segment.status_code == 201, segment.text
    automation = await api.post(
        "/v1/automations",
        json={
            "id": "trial-ending",
            "name": "Trial ending, engaged",
            "status": "active",
            "campaign_id": created["id"],
            "trigger": {"kind": "event", "event_type": "trial.will_end"},
            "condition": engaged,
            "channel": "sequence",
            "source_ref": "seq-trial-end",
        },
    )
    assert automation.status_code == 201, automation.text
    now = time.time()

    def event(i: str, contact: str, type_: str, at: float, **traits: Any) -> dict[str, Any]:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
        return {"id": i, "type": type_, "contact_id": contact, "occurred_at": when} | {
            "email": f"{contact}@example.com",
            "traits": traits,
            "properties": {"path": "/pricing"} if type_ == "page.viewed" else {},
        }

    events = [
        event("b1", "c-ann", "contact.updated", now - 2, plan="trial", engagement_score=62),
        event("b2", "c-bob", "contact.updated", now - 2, plan="trial", engagement_score=10),
        event("b3", "c-ann", "page.viewed", now - 1),
        event("b4", "c-ann", "trial.will_end", now),
        event("b5", "c-bob", "trial.will_end", now),
    ]
    accepted = await api.post("/v1/contact-events", json={"events": events})
    assert accepted.status_code == 202, accepted.text

    async def runs() -> list[dict[str, Any]]:
        return list((await api.get("/v1/automations/trial-ending/runs")).json()["runs"])

    await _until(
        runs,
        lambda r: {x["status"] for x in r} == {"sent", "refused"},
        "the automation's runs",
    )

    async def members() -> list[dict[str, Any]]:
        return list((await api.get("/v1/segments/engaged/members")).json()["members"])

    await _until(members, lambda m: [x["contact_id"] for x in m] == ["c-ann"], "the segment")

    async def segment() -> dict[str, Any]:
        return dict((await api.get("/v1/segments/engaged")).json())

    # its backfill over the profiles is a job of its own, seconds later on a loaded machine
    # than the live membership (seen "0 of 2" after the page's 5 s in two CI-equivalent runs)
    await _until(segment, lambda s: (s["backfill"] or {}).get("finished"), "the backfill")

    await sign_in(watched, await service.key("analyst"))  # every page here is read-only
    await page.get_by_role("link", name="Segments").click()
    await expect(page.get_by_role("heading", name="Segments")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Engaged contacts")
    await expect(row).to_contain_text("live")
    await expect(row).to_contain_text("done")  # the backfill
    await watched.shot("segments")

    await row.get_by_role("link", name="Engaged contacts").click()
    await expect(page.get_by_role("heading", name="Engaged contacts")).to_be_visible()
    members_figure = page.locator(".figures li", has_text="Members").locator("strong")
    await expect(members_figure).to_have_text("1")
    await expect(page.locator("pre.code")).to_contain_text("traits.engagement_score")
    listed = page.locator("table[aria-labelledby=members] tbody tr")
    await expect(listed).to_have_count(1)
    await watched.shot("segment")
    async with page.expect_download() as downloading:
        await page.get_by_role("link", name="Export every member as CSV").click()
    saved = await (await downloading.value).path()
    exported = (await asyncio.to_thread(saved.read_text)).splitlines()
    assert [line.split(",")[0] for line in exported] == ["contact_id", "c-ann"]

    await listed.get_by_role("link", name="c-ann").click()
    await expect(page.get_by_role("heading", name="Contact c-ann")).to_be_visible()
    traits = page.locator("table[aria-labelledby=traits]")
    await expect(traits.get_by_role("row").filter(has_text="engagement_score")).to_contain_text(
        "62"
    )
    facts = page.locator("table[aria-labelledby=facts]")
    viewed = page.get_by_role("rowheader", name="page.viewed", exact=True)
    await expect(facts.get_by_role("row").filter(has=viewed)).to_contain_text("1")
    await expect(page.locator("#segments ~ ul").first).to_contain_text("Engaged contacts")
    sent = page.locator("table[aria-labelledby=runs]").get_by_role("row").nth(1)
    await expect(sent).to_contain_text("sent")
    await expect(sent).to_contain_text("BROWSERTRIAL")
    await expect(page.locator("table[aria-labelledby=graph]")).to_contain_text("BROWSERTRIAL")
    await watched.shot("contact-profile")

    await sent.get_by_role("link", name="trial-ending").click()
    await expect(page.get_by_role("heading", name="Trial ending, engaged")).to_be_visible()
    funnel = page.locator(".funnel")
    await expect(funnel.locator("li", has_text="Triggered").locator("strong")).to_have_text("2")
    await expect(funnel.locator("li", has_text="Sent").locator("strong")).to_have_text("1")
    await expect(page.get_by_role("row").filter(has_text="c-bob")).to_contain_text(
        "condition_false"
    )
    await watched.shot("automation")

    await page.get_by_role("link", name="Automations", exact=True).first.click()
    row = page.get_by_role("row").filter(has_text="Trial ending, engaged")
    await expect(row.get_by_role("link", name="Campaign BROWSERTRIAL")).to_be_visible()
    await expect(row.get_by_role("cell").last).to_have_text("1")  # refused
    await watched.shot("automations")

    # the same read-only pages, read without JavaScript: everything is in the HTML
    browser = page.context.browser
    assert browser is not None
    plain = await browser.new_context(base_url=service.url, java_script_enabled=False)
    try:
        reader = await plain.new_page()
        await reader.goto("/sign-in")  # a plain form post: signing in needs no script either
        await reader.get_by_label("API key").fill(await service.key("analyst"))
        await reader.get_by_role("button", name="Sign in").click()
        await expect(reader.get_by_role("heading", name="Campaigns")).to_be_visible()
        for path, shown in [
            ("/segments", "Engaged contacts"),
            ("/segments/engaged", "c-ann"),
            ("/contacts/c-ann", "engagement_score"),
            ("/automations", "Trial ending, engaged"),
            ("/automations/trial-ending", "condition_false"),
            ("/operations", "Stripe reconciliation"),
        ]:
            await reader.goto(path)
            await expect(reader.locator("main")).to_contain_text(shown)
        await reader.screenshot(path=SCREENSHOTS / "operations-without-javascript.png")
    finally:
        await plain.close()


async def _reconciled(service: Service) -> None:
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    findings = [
        Finding("in_browser_lost", "missing", "EUR 4500 paid, not in our ledger", True),
        Finding("in_browser_changed", "amount_mismatch", "Stripe: paid 4000; ours: 4100", False),
    ]
    conn = await asyncpg.connect(service.database_url)
    try:
        report = Report(invoices=4, matched=2, findings=findings)
        await reconciliations.record(conn, report, since, until, repair=True)
    finally:
        await conn.close()


async def test_an_analyst_sees_no_action(watched: Watched, service: Service) -> None:
    page = watched.page
    created = await service.campaign("BROWSERANALYST")
    await sign_in(watched, await service.key("analyst"))
    await expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    await expect(page.get_by_role("link", name="New campaign")).to_have_count(0)
    await page.goto(f"/campaigns/{created['id']}")
    await expect(page.get_by_role("heading", name=created["name"])).to_be_visible()
    buttons = await page.locator("main button").all_inner_texts()
    assert buttons == ["Search codes"], buttons  # reading, never acting
    await expect(page.locator("main form[method=post]")).to_have_count(0)
    await watched.shot("campaign-analyst")
    watched.expected_statuses.add(403)
    for form in ("/campaigns/new", f"/campaigns/{created['id']}/terms"):
        await page.goto(form)  # typed by hand: the forms are not served to an analyst
        await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        await expect(page.locator("main form")).to_have_count(0)


async def test_a_checkout_key_cannot_sign_in(watched: Watched, service: Service) -> None:
    page = watched.page
    watched.expected_statuses.add(401)
    await sign_in(watched, await service.key("checkout"))
    await expect(page.get_by_role("alert")).to_contain_text("cannot sign in")
    await expect(page).to_have_url(f"{service.url}/sign-in")
    assert not [c for c in await page.context.cookies() if c["name"] == "coupons_session"]
    await watched.shot("sign-in-refused")
    await page.goto("/")
    await expect(page).to_have_url(f"{service.url}/sign-in")  # still nobody signed in

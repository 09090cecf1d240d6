"""The Stripe API side of the bridge: requests checked by stripe-mock (Stripe's own mock server,
started here on loopback), and reconciliation against a recorded-response double, because
stripe-mock answers fixed fixtures and cannot hold the invoices a reconciliation compares."""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import httpx
import pytest

from contracts.events import CodeRedeemed
from services.coupons.settings import Settings
from services.coupons.stripe.client import client_for, paid_invoices
from tests import stripe_payloads as sp
from tests.integration.conftest import ServiceFactory, create_key, free_port
from tests.integration.helpers import define, deliver, handled, logged

pytestmark = pytest.mark.integration


def stripe_mock_binary() -> str:
    """Installed by deploy/install-stripe-mock (`go install`, into $(go env GOPATH)/bin)."""
    found = shutil.which("stripe-mock")
    if found:
        return found
    go = shutil.which("go") or "/usr/local/go/bin/go"
    gopath = Path.home() / "go"
    if Path(go).exists():
        done = subprocess.run([go, "env", "GOPATH"], capture_output=True, text=True, check=True)
        gopath = Path(done.stdout.strip())
    candidate = gopath / "bin" / "stripe-mock"
    assert candidate.exists(), "stripe-mock is missing: run deploy/install-stripe-mock"
    return str(candidate)


def stripe_mock_command(port: int) -> list[str]:
    """stripe-mock serving HTTP on `port`, and HTTPS (which it serves too, by default on
    12112: taken when another stripe-mock runs) on a port the system chooses."""
    return [stripe_mock_binary(), "-http-addr", f"127.0.0.1:{port}", "-https-addr", "127.0.0.1:"]


@pytest.fixture(scope="session")
def stripe_mock() -> Iterator[str]:
    """stripe-mock on a free loopback port, for the session."""
    port = free_port()
    process = subprocess.Popen(
        stripe_mock_command(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, "stripe-mock exited"
        try:
            httpx.get(f"{base}/v1/coupons", auth=("sk_test_123", ""))
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "stripe-mock did not start in 20 s"
            time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=10)


async def test_the_paid_invoices_query_is_one_stripe_accepts(stripe_mock: str) -> None:
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS="unused",
        DATABASE_URL="unused",
        STRIPE_API_KEY="sk_test_123",
        STRIPE_API_BASE=stripe_mock,
    )
    since, until = datetime(2009, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    found = [i async for i in paid_invoices(client_for(settings), since, until)]
    assert [i["object"] for i in found] == ["invoice"]


class Recorded(BaseHTTPRequestHandler):
    """Answers `GET /v1/invoices` with a recorded list response."""

    invoices: ClassVar[list[dict[str, Any]]] = []
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorded.requests.append(self.path)
        body = json.dumps(
            {"object": "list", "data": self.invoices, "has_more": False, "url": "/v1/invoices"}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("request-id", "req_recorded")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorded() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def reconcile(settings: Settings, base: str, *flags: str) -> tuple[int, dict[str, Any]]:
    today = datetime.now(UTC).date()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "services.coupons.cli", "stripe", "reconcile", "--json"),
            *("--since", (today - timedelta(days=1)).isoformat(), *flags),
        ],
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "COUPONS_TOPIC_PREFIX": settings.topic_prefix,
            "COUPONS_PARTITIONS": str(settings.partitions),
            "STRIPE_API_KEY": "sk_test_123",
            "STRIPE_API_BASE": base,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def operations_page(service: httpx.Client, settings: Settings) -> str:
    """The dashboard's Operations page, as an analyst signed in."""
    with httpx.Client(base_url=service.base_url, timeout=30) as browser:
        key = create_key(settings.database_url, "analyst")
        assert browser.post("/sign-in", data={"api_key": key}).status_code == 303
        page = browser.get("/operations")
    assert page.status_code == 200
    return page.text


async def test_reconciliation_reports_and_repairs_what_the_ledger_lacks(
    bridge: httpx.Client,
    settings: Settings,
    recorded: str,
) -> None:
    campaign = define(bridge, "RECON10")
    ours = sp.coupon(metadata={"growthos_campaign_id": campaign, "growthos_code": "RECON10"})

    def paid(amount_off: int) -> dict[str, Any]:
        whole = sp.discount(sp.sid("cus"), ours)
        invoice = sp.invoice(whole["customer"], [(whole["id"], amount_off)], 5000)
        return invoice | {"discounts": [whole]}  # as listed with expand[]=data.discounts

    agreed, lost, changed, unknown_to_stripe = paid(500), paid(700), paid(900), paid(100)
    for invoice in (agreed, changed, unknown_to_stripe):
        assert deliver(bridge, sp.event("invoice.paid", invoice)).status_code == 200
    await handled(settings, 3)
    Recorded.invoices = [
        agreed,
        lost,
        changed
        | {
            "amount_paid": 4000,
            "total_discount_amounts": [{"amount": 1000, "discount": changed["discounts"][0]["id"]}],
        },
        sp.invoice(sp.sid("cus"), [], 3000),  # no discount: not ours to reconcile
    ]
    status, report = reconcile(settings, recorded, "--repair")
    assert status == 1, report
    assert any("expand" in r and "status=paid" in r for r in Recorded.requests)
    assert (report["invoices"], report["matched"]) == (3, 1)
    kinds = {f["order_ref"]: (f["kind"], f["repaired"]) for f in report["findings"]}
    assert kinds == {
        lost["id"]: ("missing", True),
        changed["id"]: ("amount_mismatch", False),
        unknown_to_stripe["id"]: ("extra", False),
    }
    # the run and its findings are recorded: the dashboard's Operations page shows them
    operations = operations_page(bridge, settings)
    assert "<strong>3</strong> discounted invoices checked, 1 matched" in operations
    for order_ref, (kind, fixed) in kinds.items():
        row = re.search(rf"<tr><th scope=\"row\"><code>{order_ref}</code>.*?</tr>", operations)
        assert row is not None, order_ref
        assert (
            f">{kind}</span>" in row.group()
            and f"<td>{'yes' if fixed else 'no'}</td>" in row.group()
        )
    repaired = [e for e in await logged(settings) if isinstance(e, CodeRedeemed)]
    assert sorted(e.order_ref for e in repaired) == sorted(
        i["id"] for i in (agreed, lost, changed, unknown_to_stripe)
    )
    # the missing invoice's webhook arriving late changes nothing; a second run finds it
    assert deliver(bridge, sp.event("invoice.paid", lost)).status_code == 200
    await handled(settings, 4)
    status, report = reconcile(settings, recorded)
    assert lost["id"] not in {f["order_ref"] for f in report["findings"]}
    assert lost["id"] not in operations_page(bridge, settings)  # the last run only
    assert len([e for e in await logged(settings) if isinstance(e, CodeRedeemed)]) == 4


async def test_mirroring_creates_a_coupon_and_a_promotion_code_per_code_resumably_and_paced(
    start_service: ServiceFactory, settings: Settings, stripe_mock: str
) -> None:
    client, _ = start_service(
        STRIPE_API_KEY="sk_test_123", STRIPE_API_BASE=stripe_mock, STRIPE_RATE_LIMIT="10"
    )
    campaign = await asyncio.to_thread(define, client, "MIRROR25")
    batch = await asyncio.to_thread(
        client.post, f"/v1/campaigns/{campaign}/code-batches", json={"count": 30}
    )
    assert batch.status_code == 202, batch.text
    status = "running"
    for _ in range(300):
        status = (await asyncio.to_thread(client.get, batch.headers["location"])).json()["status"]
        if status != "running":
            break
        await asyncio.sleep(0.2)
    assert status == "done"
    conn = await asyncpg.connect(settings.database_url)
    try:  # as if an earlier job had mirrored five codes before it stopped
        await conn.executemany(
            "INSERT INTO stripe_code_map (stripe_id, campaign_id, code) VALUES ($1, $2, $3)",
            [
                (f"promo_earlier{i}", campaign, r["code"])
                for i, r in enumerate(
                    await conn.fetch("SELECT code FROM codes ORDER BY code LIMIT 5")
                )
            ],
        )
        started = await asyncio.to_thread(client.post, f"/v1/campaigns/{campaign}/stripe-mirror")
        assert started.status_code == 202, started.text
        job = started.json()
        assert (job["total"], job["status"]) == (31, "running")
        again = await asyncio.to_thread(client.post, f"/v1/campaigns/{campaign}/stripe-mirror")
        assert again.json()["id"] == job["id"]  # one running job per campaign
        deadline = time.monotonic() + 30
        while job["status"] == "running":
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.3)
            job = (await asyncio.to_thread(client.get, started.headers["location"])).json()
        assert (job["status"], job["mirrored"], job["error"]) == ("done", 31, None)
        assert job["coupon_id"] == f"growthos-{campaign}"
        # 27 requests (a coupon, 26 codes) at 10/s, a burst of 10 first: at least 1.6 s
        took = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(
            job["created_at"]
        )
        assert took.total_seconds() >= 1.6
        mapped = await conn.fetch(
            "SELECT code FROM stripe_code_map WHERE campaign_id = $1", campaign
        )
        codes = [r["code"] for r in mapped]
        assert len(codes) == 32 and codes.count(None) == 1 and "MIRROR25" in codes
        assert len(set(codes)) == 32
    finally:
        await conn.close()

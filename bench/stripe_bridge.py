"""Stripe bridge: webhook ingest rate and latency, and paid invoice to visible redemption.

Provisions Kafka and PostgreSQL on its own ports (or uses KAFKA_BOOTSTRAP_SERVERS /
DATABASE_URL), serves a fresh database with one campaign, then per run:
- ingest: N signed `invoice.paid` events (shaped as Stripe sends them), from W keep-alive
  clients; rate of 2xx and their latency (verified, appended to Kafka with acks=all);
- visibility: P discounted invoices, one at a time every 50 ms; for each, the time from the
  webhook's 2xx until `GET /v1/redemptions/{id}` (the campaigns projection) finds it.
Targets (issue 5): ingest >= 500 events/s with p99 <= 50 ms; visibility p99 <= 1 s.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
from service import serving

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.coupons.stripe.translate import redemption_id
from tests import stripe_payloads as sp

SECRET = "whsec_bench_" + "b" * 20
KAFKA_PORT, PG_PORT = 39392, 35732


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def ingest(base: str, count: int, workers: int) -> tuple[float, list[float], int]:
    """(events/s, latencies in ms, non-2xx)."""
    bodies = []
    for _ in range(count):
        body = sp.body_of(sp.event("invoice.paid", sp.invoice(sp.sid("cus"), [], 4900)))
        bodies.append(body)
    pending = iter(bodies)
    latencies: list[float] = []
    failed = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal failed
        for body in pending:
            headers = {"Stripe-Signature": sp.sign(body, SECRET)}
            started = time.perf_counter()
            reply = await http.post("/v1/webhooks/stripe", content=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            failed += reply.status_code // 100 != 2

    clients = [httpx.AsyncClient(base_url=base, timeout=30) for _ in range(workers)]
    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        seconds = time.perf_counter() - started
    finally:
        for c in clients:
            await c.aclose()
    return count / seconds, latencies, failed


async def visible(client: httpx.Client, campaign: str, count: int) -> list[float]:
    """Seconds from each webhook's 2xx to its redemption being readable."""
    ours = sp.coupon(metadata={"growthos_campaign_id": campaign, "growthos_code": "BENCHSTRIPE"})
    http = httpx.AsyncClient(base_url=str(client.base_url), headers=client.headers, timeout=30)

    async def one() -> float:
        whole = sp.discount(sp.sid("cus"), ours)
        invoice = sp.invoice(whole["customer"], [(whole["id"], 980)], 4900)
        invoice["discounts"] = [whole]
        body = sp.body_of(sp.event("invoice.paid", invoice))
        reply = await http.post(
            "/v1/webhooks/stripe", content=body, headers={"Stripe-Signature": sp.sign(body, SECRET)}
        )
        assert reply.status_code == 200, reply.text
        accepted = time.perf_counter()
        path = f"/v1/redemptions/{redemption_id(invoice['id'], whole['id'])}"
        for _ in range(100_000):
            if (await http.get(path)).status_code == 200:
                break
            await asyncio.sleep(0.005)
        return time.perf_counter() - accepted

    try:
        await one()  # untimed: waits out what the ingest phase left queued
        tasks = []
        for _ in range(count):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(0.05)
        return list(await asyncio.gather(*tasks))
    finally:
        await http.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--invoices", type=int, default=200)
    args = parser.parse_args()
    os.environ["STRIPE_WEBHOOK_SECRET"] = SECRET
    with serving("bench-stripe", KAFKA_PORT, PG_PORT) as client:
        reply = client.post(
            "/v1/campaigns",
            json={
                "name": "Bench Stripe",
                "code": "BENCHSTRIPE",
                "discount": {"kind": "percent", "percent_off": "20"},
                "limits": {"per_contact": None},
            },
        )
        assert reply.status_code == 201, reply.text
        campaign = reply.json()["id"]
        base = str(client.base_url)
        asyncio.run(ingest(base, 500, args.workers))  # warm-up
        rates, p99s, vis99s = [], [], []
        for run in range(1, args.runs + 1):
            rate, latencies, failed = asyncio.run(ingest(base, args.events, args.workers))
            seen = asyncio.run(visible(client, campaign, args.invoices))
            rates.append(rate)
            p99s.append(pct(latencies, 99))
            vis99s.append(pct(seen, 99))
            print(
                f"run {run}: ingest {rate:6.0f} events/s  p50 {pct(latencies, 50):5.1f}"
                f"  p99 {pct(latencies, 99):5.1f} ms  non-2xx {failed}"
                f" | paid invoice -> visible redemption p50 {pct(seen, 50) * 1000:5.0f}"
                f"  p99 {pct(seen, 99) * 1000:5.0f} ms",
                flush=True,
            )
        print(
            f"median of {args.runs}: ingest {statistics.median(rates):.0f} events/s"
            f" (target >= 500), 2xx p99 {statistics.median(p99s):.1f} ms (target <= 50);"
            f" visible p99 {statistics.median(vis99s) * 1000:.0f} ms (target <= 1000)"
        )


if __name__ == "__main__":
    main()

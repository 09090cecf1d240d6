"""Stripe bridge: webhook ingest rate and latency, and paid invoice to visible redemption.

Provisions Kafka and PostgreSQL on its own ports (or uses KAFKA_BOOTSTRAP_SERVERS /
DATABASE_URL), serves a fresh database with one campaign (`COUPONS_WORKERS=2` unless
`--workers`), then per run:
- ingest: wrk (C, so the load generator takes little of the 2 cores the service shares with
  Kafka and PostgreSQL) posts signed `invoice.paid` events (shaped as Stripe sends them) over
  keep-alive connections for a fixed duration; rate of 2xx and their latency (verified,
  appended to Kafka with acks=all). wrk has no HMAC, so the events are signed here right before
  the phase (the signature holds for 300 s), one per line of a file the Lua script cycles
  through; CPU is % of the whole machine, as in bench/checkout.py;
- visibility: P discounted invoices, one at a time every 50 ms; for each, the time from the
  webhook's 2xx until `GET /v1/redemptions/{id}` (the campaigns projection) finds it.
Targets (issue 5): ingest >= 500 events/s with p99 <= 50 ms; visibility p99 <= 1 s.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from loads import REPORT, cpu_ticks
from service import serving

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.coupons.stripe.translate import redemption_id
from tests import stripe_payloads as sp

SECRET = "whsec_bench_" + "b" * 20
# below the ephemeral range (32768+), so no outgoing connection holds them
KAFKA_PORT, PG_PORT = 30392, 30732
THREADS = 2  # wrk's

# Each wrk thread takes every THREADS-th line of the events file (`<signature> <body>`), so no
# event is sent twice until a thread has sent all of its own; requests are formatted once.
SCRIPT = """
local threads = 0
setup = function(thread)
  thread:set("id", threads)
  threads = threads + 1
end
init = function(args)
  requests, n = {}, 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  for line in io.lines(args[1]) do
    if n % tonumber(args[2]) == id then
      local signature, body = line:match("^(%S+) (.*)$")
      wrk.headers["Stripe-Signature"] = signature
      requests[#requests + 1] = wrk.format(nil, nil, nil, body)
    end
    n = n + 1
  end
  n = 0
end
request = function()
  n = n + 1
  return requests[(n - 1) % #requests + 1]
end
"""


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def signed_events(path: Path, count: int) -> None:
    """`count` distinct paid invoices, each on one line: its signature, a space, its body."""
    with path.open("wb") as out:
        for _ in range(count):
            document = sp.event("invoice.paid", sp.invoice(sp.sid("cus"), [], 4900))
            body = json.dumps(document).encode()  # as sp.body_of, on one line
            out.write(sp.sign(body, SECRET).encode() + b" " + body + b"\n")


def ingest(args: argparse.Namespace, url: str, seconds: int, pid: int) -> dict[str, Any]:
    """wrk's report (requests, seconds, bad = non-2xx and errors, p50/p90/p99 in ms) and
    `cpu`: the service's, wrk's and all busy time, in % of the machine."""
    with tempfile.TemporaryDirectory() as tmp:
        script, events = Path(tmp, "events.lua"), Path(tmp, "events")
        script.write_text(SCRIPT + REPORT)
        signed_events(events, args.events)
        command = ["wrk", f"-t{THREADS}", f"-c{args.connections}", f"-d{seconds}s"]
        command += ["-s", str(script), url, "--", str(events), str(THREADS)]
        client = resource.getrusage(resource.RUSAGE_CHILDREN)
        before = cpu_ticks({"service": pid})
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks = cpu_ticks({"service": pid})
    service, busy, total = (ticks[k] - before[k] for k in ("service", "busy", "total"))
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    per_cent = 100 / ((os.cpu_count() or 1) * found["seconds"])  # CPU seconds -> % of all
    wrk_s = after.ru_utime + after.ru_stime - client.ru_utime - client.ru_stime
    found["cpu"] = {
        "service": service / os.sysconf("SC_CLK_TCK") * per_cent,
        "wrk": wrk_s * per_cent,
        "busy": 100 * busy / max(total, 1),
    }
    return found


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
        # Untimed: wait out what the ingest phase left queued on every partition (48 random
        # invoice ids miss one of 6 partitions with a chance under 0.1 %).
        await asyncio.gather(*(one() for _ in range(48)))
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
    parser.add_argument("--seconds", type=int, default=10, help="each ingest phase's duration")
    parser.add_argument("--connections", type=int, default=4, help="wrk's open connections")
    parser.add_argument(
        "--events", type=int, default=20_000, help="distinct events signed for a phase"
    )
    parser.add_argument("--workers", type=int, default=2, help="COUPONS_WORKERS of the service")
    parser.add_argument("--invoices", type=int, default=200)
    args = parser.parse_args()
    env = {"STRIPE_WEBHOOK_SECRET": SECRET, "COUPONS_WORKERS": str(args.workers)}
    with serving("bench-stripe", KAFKA_PORT, PG_PORT, env=env) as served:
        client, pid = served.client, served.pid
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
        url = str(client.base_url.join("/v1/webhooks/stripe"))
        ingest(args, url, 2, pid)  # warm-up
        rates, p99s, vis99s = [], [], []
        for run in range(1, args.runs + 1):
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())  # 1, 5, 15 min
            print(f"run {run}: {os.cpu_count()} CPUs, load average {load} before it", flush=True)
            found = ingest(args, url, args.seconds, pid)
            seen = asyncio.run(visible(client, campaign, args.invoices))
            rates.append(found["requests"] / found["seconds"])
            p99s.append(found["p99"])
            vis99s.append(pct(seen, 99))
            cpu = " ".join(f"{k} {v:.0f}%" for k, v in found["cpu"].items())
            repeated = max(found["requests"] - args.events, 0)  # sent a second time or more
            print(
                f"  ingest {rates[-1]:6.0f} events/s  p50 {found['p50']:5.1f}"
                f"  p90 {found['p90']:5.1f}  p99 {found['p99']:5.1f} ms"
                f"  non-2xx/errors {found['bad']}  repeated {repeated}"
                f"  cpu: {cpu}\n"
                f"  paid invoice -> visible redemption p50 {pct(seen, 50) * 1000:5.0f}"
                f"  p99 {pct(seen, 99) * 1000:5.0f} ms",
                flush=True,
            )
        print(
            f"median of {args.runs} ({args.connections} connections, {args.workers} workers):"
            f" ingest {statistics.median(rates):.0f} events/s (target >= 500),"
            f" 2xx p99 {statistics.median(p99s):.1f} ms (target <= 50);"
            f" visible p99 {statistics.median(vis99s) * 1000:.0f} ms (target <= 1000)"
        )


if __name__ == "__main__":
    main()

"""Dashboard pages: render time with 1,000 campaigns and 1,000,000 redemptions in the read
models.

    python bench/dashboard.py [--campaigns C] [--redemptions R] [--requests N]

The read-model tables (`campaigns`, `usage_campaigns`, `usage_refusals`, `ledger` and its
running totals, `contact_coupons`, `codes`, `campaign_audit`; 20 segments, one of 200,000
members; a Stripe reconciliation with 500 findings) are seeded directly in SQL
(minutes of events otherwise), skewed as real campaigns are: the first campaign has 10 % of
the redemptions, the rest share the others evenly. A real `coupons serve` on that database
serves the pages to one signed-in admin; N sequential requests per page, timed at the client
(the whole HTTP round trip on 127.0.0.1, so an upper bound of the render), p50 / p95 / max in
ms. The goal (issue 20) is p95 <= 200 ms for every page.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from contracts.rules import Eligibility, Limits
from contracts.topics import declare
from services.coupons.bus.topics import ensure_topics
from services.coupons.store.migrate import discover, migrate
from services.devstack.stack import default_state_dir, provisioned

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 3
GOAL_MS = 200.0


async def seed(url: str, campaigns: int, redemptions: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute(
            """INSERT INTO campaigns (id, name, discount, defined_at, correlation_id, event_id,
                                      code, status, rules, distributed, redemptions)
               SELECT 'c' || i, 'Campaign ' || i,
                      '{"kind": "amount", "amount_off": 500, "currency": "EUR"}',
                      now() - make_interval(mins => i), 'bench', gen_random_uuid(),
                      'CODE' || i, (ARRAY['active', 'paused', 'ended'])[1 + i % 3],
                      jsonb_build_object(
                          'validity', jsonb_build_object('starts_at', null, 'expires_at',
                              to_char(now() + make_interval(days => 1 + i % 90),
                                      'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                          'duration', jsonb_build_object('kind', 'once', 'months', null),
                          'limits', $3::jsonb, 'eligibility', $4::jsonb),
                      2 * $1 / $2, $1 / $2
               FROM generate_series(0, $2 - 1) i""",
            redemptions,
            campaigns,
            Limits(budget=10_000_000).model_dump_json(),
            Eligibility(products=("plan_pro",)).model_dump_json(),
        )
        await conn.execute(
            """INSERT INTO usage_campaigns (campaign_id, budget, issued, distributed, redeemed,
                                            budget_spent)
               SELECT 'c' || i, CASE WHEN i % 2 = 0 THEN 10000000 END, 1, 0, 0, 0
               FROM generate_series(0, $1 - 1) i""",
            campaigns,
        )
        await conn.execute(
            """INSERT INTO usage_refusals (campaign_id, command_type, reason, refused)
               SELECT 'c' || i, 'coupon.redeem_code.v1', r, 1 + i % 7
               FROM generate_series(0, $1 - 1) i, unnest(ARRAY['expired', 'exhausted']) r""",
            campaigns,
        )
        # 10 % on the first campaign, the rest spread; over the last 60 days; 5 % reversed.
        await conn.execute(
            """INSERT INTO ledger (redemption_id, campaign_id, code, contact_id, order_ref,
                                   source, channel, source_ref, currency, amount, discount,
                                   total, redeemed_at, reversed_at)
               SELECT 'r' || n,
                      'c' || CASE WHEN n % 10 = 0 THEN 0 ELSE 1 + n % ($2 - 1) END,
                      'CODE' || n % 1000, 'contact-' || n % 200000, 'order-' || n,
                      'api', (ARRAY['email', 'in_app', 'direct'])[1 + n % 3],
                      'sequence-' || n % 5, 'EUR', 2000, 500, 1500,
                      now() - make_interval(secs => (n % 5184000)),
                      CASE WHEN n % 20 = 0 THEN now() END
               FROM generate_series(0, $1 - 1) n""",
            redemptions,
            campaigns,
        )
        await conn.execute(
            """INSERT INTO contact_coupons (event_id, contact_id, activity, campaign_id, code,
                                            order_ref, currency, amount, discount, total,
                                            occurred_at)
               SELECT gen_random_uuid(), contact_id, 'redeemed', campaign_id, code, order_ref,
                      currency, amount, discount, total, redeemed_at
               FROM ledger"""
        )
        await conn.execute(
            """INSERT INTO codes (code, campaign_id, batch_id, chunk, contact_id, distributed_at)
               SELECT 'BENCH' || lpad(n::text, 8, '0'), 'c0', 'b0', n / 10000,
                      CASE WHEN n % 4 = 0 THEN 'contact-' || n END,
                      CASE WHEN n % 4 = 0 THEN now() END
               FROM generate_series(0, 99999) n"""
        )
        await conn.execute(
            """INSERT INTO campaign_audit (event_id, campaign_id, type, occurred_at, actor,
                                           correlation_id, detail)
               SELECT gen_random_uuid(), 'c' || n % $1, 'coupon.campaign_updated.v1',
                      now() - make_interval(mins => n), 'bench', 'bench', '{}'
               FROM generate_series(0, 9999) n""",
            campaigns,
        )
        # Segments: static (no condition, so nothing re-evaluates them while measured), the
        # first with 200,000 members, 19 more with 5,000 each; a reconciliation's last run.
        await conn.execute(
            """INSERT INTO segments (id, name, kind) SELECT 's' || i, 'Segment ' || i, 'static'
               FROM generate_series(0, 19) i;
               INSERT INTO segment_versions (segment_id, version, status, actor)
               SELECT id, 1, 'active', 'bench' FROM segments;
               INSERT INTO segment_members (segment_id, contact_id, version)
               SELECT 's0', 'contact-' || n, 1 FROM generate_series(0, 199999) n
               UNION ALL
               SELECT 's' || i, 'contact-' || (n * 20 + i), 1
               FROM generate_series(1, 19) i, generate_series(0, 4999) n;
               INSERT INTO stripe_reconciliations (since, until, repair, invoices, matched)
               VALUES (now() - interval '1 day', now(), false, 10000, 9500);
               INSERT INTO stripe_reconciliation_findings
                   (reconciliation_id, position, order_ref, kind, detail, repaired)
               SELECT 1, n, 'in_' || n, 'amount_mismatch', 'Stripe: paid 4000; ours: 4100', false
               FROM generate_series(0, 499) n"""
        )
        # The ledger's running totals, as migration 0056 fills them from an existing ledger.
        (totals,) = [m for m in discover() if m.version == 56]
        await conn.execute(totals.sql[totals.sql.index("INSERT INTO") :])
        await conn.execute("VACUUM ANALYZE")  # as autovacuum leaves them: visibility maps set
    finally:
        await conn.close()


async def serve(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.coupons.cli", "serve",
        cwd=ROOT, env={**env, "COUPONS_PORT": str(port), "COUPONS_LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        deadline = time.monotonic() + 120
        while True:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.returncode is not None:
                raise RuntimeError("the service did not become ready")
            await asyncio.sleep(0.3)


async def admin_key(env: dict[str, str]) -> str:
    made = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.coupons.cli", "keys", "create",
        "--scope", "admin", "--name", "bench",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await made.communicate()
    return out.decode().strip().splitlines()[-1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


PAGES = {
    "campaigns (newest first)": "/",
    "campaigns by revenue": "/?sort=revenue&desc=true",
    "campaigns by redemption rate": "/?sort=rate&desc=true",
    "campaigns filtered": "/?status=active&q=Campaign%2099",
    "campaign (busiest: 10 % of redemptions)": "/campaigns/c0",
    "campaign (typical)": "/campaigns/c7",
    "campaign codes search": "/campaigns/c0?codes_q=BENCH0005",
    "contact": "/contacts/contact-4242",
    "new campaign": "/campaigns/new",
    "change terms": "/campaigns/c7/terms",
    "operations (a reconciliation with 500 findings)": "/operations",
    "segments": "/segments",
    "segment (200,000 members)": "/segments/s0",
    "segment members, a later page": "/segments/s0?after=contact-150000",
}


async def measure(url: str, key: str, requests: int, redemptions: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        signed = await client.post("/sign-in", data={"api_key": key})
        assert signed.status_code == 303, signed.text
        busiest = (await client.get(PAGES["campaign (busiest: 10 % of redemptions)"])).text
        assert f"{redemptions // 10:,}" in busiest, "the busiest campaign's figures are missing"
        for name, path in PAGES.items():
            for _ in range(3):  # warm: connections, plans, caches
                assert (await client.get(path)).status_code == 200, path
            for _ in range(requests):
                started = time.perf_counter()
                page = await client.get(path)
                timings.setdefault(name, []).append((time.perf_counter() - started) * 1000)
                assert page.status_code == 200, path
    return timings


async def main_async(args: argparse.Namespace, kafka: str, database_url: str) -> bool:
    tag = uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "bench_{tag}"')
    finally:
        await admin.close()
    url = database_url.rsplit("/", 1)[0] + f"/bench_{tag}"
    started = time.monotonic()
    await seed(url, args.campaigns, args.redemptions)
    print(
        f"seeded {args.campaigns:,} campaigns, {args.redemptions:,} redemptions (ledger and"
        f" contact graph), 100,000 codes in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    prefix = f"bench{tag}."
    await ensure_topics(kafka, declare(prefix, PARTITIONS), 1)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "DATABASE_URL": url,
        "COUPONS_TOPIC_PREFIX": prefix,
        "COUPONS_PARTITIONS": str(PARTITIONS),
    }
    port = args.port
    process = await serve(env, port)
    try:
        key = await admin_key(env)
        timings = await measure(f"http://127.0.0.1:{port}", key, args.requests, args.redemptions)
    finally:
        process.terminate()
        await process.wait()
    ok = True
    for name, values in timings.items():
        p95 = pct(values, 0.95)
        ok &= p95 <= GOAL_MS
        print(
            f"{name:42} p50 {statistics.median(values):6.1f} ms  p95 {p95:6.1f} ms"
            f"  max {max(values):6.1f} ms{'' if p95 <= GOAL_MS else '  OVER 200 ms'}"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--redemptions", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100, help="per page")
    parser.add_argument("--port", type=int, default=18123, help="of the service measured")
    parser.add_argument("--kafka-port", type=int, default=31493)
    parser.add_argument("--pg-port", type=int, default=31833)
    parser.add_argument("--state-dir", type=Path, default=default_state_dir() / "bench-dash")
    args = parser.parse_args()
    with provisioned(
        args.state_dir, kafka_port=args.kafka_port, pg_port=args.pg_port, database="bench"
    ) as found:
        ok = asyncio.run(main_async(args, found.kafka_bootstrap_servers, found.database_url))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

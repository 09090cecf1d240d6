"""Bulk unique codes: how long until 1,000,000 codes are generated and redeemable.

    python bench/codes.py [--count N] [--runs R]

Each run defines a campaign, starts a code batch, polls the job until it is done, then
redeems one code picked from the export, and prints the time to `done` and to the first
redemption. Prints each run and the median.
"""

import argparse
import random
import statistics
import time
import uuid

import httpx
from service import serving


def one_run(client: httpx.Client, count: int) -> tuple[float, float]:
    campaign = client.post(
        "/v1/campaigns",
        json={"name": "Bulk", "discount": {"kind": "percent", "percent_off": "10"}},
    ).json()
    started = time.monotonic()
    job = client.post(
        f"/v1/campaigns/{campaign['id']}/code-batches",
        json={"count": count},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    job.raise_for_status()
    while (batch := client.get(job.headers["location"]).json())["status"] == "running":
        time.sleep(0.2)
    done = time.monotonic() - started
    if batch["status"] != "done" or batch["generated"] != count:
        raise SystemExit(f"batch ended as {batch}")
    page = client.get(f"/v1/campaigns/{campaign['id']}/codes", params={"limit": 1000}).json()
    code = random.choice(page["data"])["code"]
    redeemed = client.post(
        "/v1/redemptions",
        json={
            "code": code,
            "customer": {"contact_id": "bench"},
            "cart": {"currency": "EUR", "amount": 1000},
            "order_ref": "bench",
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    if redeemed.status_code != 201:
        raise SystemExit(f"redemption refused: {redeemed.text}")
    return done, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    done_times, redeem_times = [], []
    with serving("bench-codes", kafka_port=30292, pg_port=30632) as served:
        for i in range(args.runs):
            done, redeemable = one_run(served.client, args.count)
            done_times.append(done)
            redeem_times.append(redeemable)
            print(f"run {i + 1}: {args.count:,} codes done in {done:.1f} s,", end=" ")
            print(f"one redeemed at {redeemable:.1f} s")
    median_redeemable = statistics.median(redeem_times)
    median_done = statistics.median(done_times)
    print(
        f"codes: {args.count:,} generated and redeemable in {median_redeemable:.1f} s"
        f" (median; {median_done:.1f} s to done) over {args.runs} runs"
    )


if __name__ == "__main__":
    main()

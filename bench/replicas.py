"""`make replicas`: three replicas of the service on one machine over six partitions.

It starts a stack of its own (Kafka and PostgreSQL on the ports given), then:
1. throughput: 1, then 2, then 3 full replicas (`coupons serve`, every component, their own
   ports) sharing the consumer groups; for each, `--seconds` of redemptions from `--clients`
   closed-loop checkout clients spread over the replicas and over 12 campaigns (two per
   partition): redemptions accepted a second;
2. one killed: the three started again logging at INFO, under the same load, SIGKILL one;
   the seconds until the survivors' deciders have taken over each of its partitions (read
   from their logs: `decider.partition_acquired`), the longest any campaign (so partition)
   went without an accepted redemption, and the accepted rate in the 10 s after the kill;
   clients whose replica vanished retry the same key on the next one;
3. checks: every key answered, every accepted redemption in the event log and in the ledger
   exactly once and nothing else there.
About 4 minutes on 2 cores; run it on an idle machine (the figures are the machine's).
"""

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from services.devstack import audit
from services.devstack.deployment import deployed
from services.devstack.fleet import Fleet
from services.devstack.replicas import (
    REPLICAS,
    RetryingLoad,
    campaign_ids,
    define,
    held,
    reassigned,
)
from services.devstack.service import create_key
from services.devstack.stack import default_state_dir


async def measure(
    fleet: Fleet, key: str, codes: list[str], args: argparse.Namespace, phase: str
) -> RetryingLoad:
    """A closed loop over the running replicas: `rate` is measured after a warm-up."""
    bases = [m.base_url for n, m in fleet.members.items() if fleet.alive(n)]
    load = RetryingLoad(bases, key, codes, args.clients, key_prefix=f"{phase}-")
    running = asyncio.create_task(load.run())
    await asyncio.sleep(args.warm_up_s)
    since = time.monotonic()
    await asyncio.sleep(args.seconds)
    load.measured = load.rate(since, time.monotonic())
    load.stop()
    await running
    return load


async def main(args: argparse.Namespace) -> int:
    problems: list[str] = []
    async with deployed(
        args.state_dir,
        "replicas",
        kafka_port=args.kafka_port,
        pg_port=args.pg_port,
        partitions=6,
        env={"COUPONS_LOG_LEVEL": "WARNING"},
    ) as deployment:
        fleet, settings, tag = deployment.fleet, deployment.settings, deployment.tag
        components = "decider,projector,batches,stripe,contacts"
        for n, name in enumerate(REPLICAS):
            fleet.add(name, components, args.http_port + n, deployment.log_dir)
        key = ""
        codes: list[str] = []
        rates: dict[int, float] = {}
        loads: list[RetryingLoad] = []
        for count, name in enumerate(REPLICAS, start=1):
            fleet.start(name)
            await fleet.ready([n for n in REPLICAS[:count]])
            if not key:
                key = create_key(settings.database_url, "admin", "replicas")
                auth = {"Authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(
                    base_url=fleet.members[name].base_url, headers=auth, timeout=30
                ) as http:
                    codes = [await define(http, c) for c in campaign_ids(6, 2, tag)]
            await asyncio.sleep(args.warm_up_s)  # the group settles (a rebalance per join)
            await fleet.ready([n for n in REPLICAS[:count]])
            loads.append(await measure(fleet, key, codes, args, f"x{count}"))
            rates[count] = loads[-1].measured
            load_average = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"{count} replica(s): {rates[count]:.0f} redemptions/s "
                f"(load average {load_average})",
                flush=True,
            )

        # the takeover is read from the deciders' logs (`decider.partition_acquired`, INFO);
        # the throughput above is measured without a log line per request
        fleet.stop_all()
        fleet.env["COUPONS_LOG_LEVEL"] = "INFO"
        for name in REPLICAS:
            fleet.start(name)
        await fleet.ready()
        victim = REPLICAS[-1]
        bases = [m.base_url for m in fleet.members.values()]
        load = RetryingLoad(bases, key, codes, args.clients, key_prefix="kill-")
        loads.append(load)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(args.warm_up_s)
        partitions = held(fleet, victim)
        killed_at = datetime.now(UTC)
        killed = time.monotonic()
        fleet.kill(victim)
        moved_s = await reassigned(fleet, partitions, killed_at)
        await asyncio.sleep(max(0.0, killed + 30 - time.monotonic()))
        pause = load.longest_pause(killed - 1, killed + 30)
        after = load.rate(killed, killed + 10)
        load.stop()
        await asyncio.wait_for(running, 120)
        print(
            f"killed {victim} holding partitions {sorted(partitions)}: taken over after "
            f"{moved_s:.1f} s; the longest any partition went without a redemption: "
            f"{pause:.1f} s; {after:.0f} redemptions/s in the 10 s after the kill",
            flush=True,
        )
        for each in loads:
            problems += [f"bare 5xx: {e}" for e in each.errors[:5]]
            if each.refused:
                problems.append(f"refused: {next(iter(each.refused.values()))}")
        events = await audit.logged_events(settings)
        await audit.projections_caught_up(settings)
        accepted = {rid for each in loads for rid, _ in each.accepted.values()}
        campaigns = campaign_ids(6, 2, tag)
        logged = [e.redemption_id for c in campaigns for e in audit.redeemed(events, c)]
        ledger = await audit.ledger_ids(settings, campaigns)
        problems += audit.exactly_once("redemptions", accepted, logged, ledger)
        print(f"{len(accepted)} accepted, {len(logged)} in the log, {len(ledger)} in the ledger")
    print("\n| replicas | redemptions/s |\n|---|---|")
    for count, rate in rates.items():
        print(f"| {count} | {rate:.0f} |")
    print(f"\npartitions of the killed replica taken over after {moved_s:.1f} s (goal <= 10 s)")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("every check passed" if not problems else f"{len(problems)} checks failed")
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kafka-port", type=int, default=30692)
    parser.add_argument("--pg-port", type=int, default=31032)
    parser.add_argument("--http-port", type=int, default=31050, help="the first of three")
    parser.add_argument("--state-dir", type=Path, default=default_state_dir() / "replicas")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20, help="each throughput phase")
    parser.add_argument("--warm-up-s", type=float, default=10)
    sys.exit(asyncio.run(main(parser.parse_args())))

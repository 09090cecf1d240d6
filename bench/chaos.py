"""`make chaos`: faults rehearsed under load, and the guarantees checked afterwards.

It starts a stack of its own (Kafka, its log directory on a tmpfs of `--disk-mib`, and
PostgreSQL, on the ports given) and the service as four processes, so that each component can
be killed alone: `api` (the HTTP API and its campaign view, code batches, contacts),
`decider`, `projector` and `stripe` (the Stripe translator). Under load from checkout clients
(two campaigns: one limited to one redemption per contact, every contact trying twice with two
keys; one capped at `--cap` redemptions) and from Stripe (paid invoices attributed to a third
campaign), all retrying with their idempotency keys (Stripe: its event ids) until answered,
it injects in turn:
* SIGKILL of each process, which a supervisor (this script, as systemd would) starts again;
  then the decider again 3 s after its restart (while it rejoins and folds), and every
  process at once;
* SIGKILL of the Kafka broker, started again after `--down-s`;
* a crash of PostgreSQL (`pg_ctl -m immediate`: no checkpoint, crash recovery at the next
  start), started again after `--down-s`;
* Kafka's log directory full: a file takes every free byte of its tmpfs (the broker's disk
  budget, a real ENOSPC on every append and segment roll) for `--down-s`, then is deleted; a
  broker that stopped on it is started again;
* the decider and the translator killed and restarted while Kafka is down, and the
  projector while PostgreSQL is down (they start without their dependency).
For each it prints the seconds from the fault's end (a process's restart, the dependency's
return, the disk freed) until every process answers `/readyz` 200, a redemption sent after
the fault is accepted, and a paid invoice delivered after it is in the ledger. Then it checks
that every accepted redemption and delivered invoice is in the event log and in the ledger
exactly once and nothing else is, that the caps held exactly, that each campaign view counts
what the log holds, and that the read models equal a rebuild from the log. It exits 1 when a
check fails. 5 to 7½ minutes on 2 cores (`--down-s 10`).
"""

import argparse
import asyncio
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faults import FAULTS, Rig, mount_disk
from webhook_load import WebhookLoad

from services.devstack import audit
from services.devstack.deployment import Deployment, deployed
from services.devstack.kafka import stop_leftover_kafka
from services.devstack.outages import CheckoutLoad
from services.devstack.service import create_key
from services.devstack.stack import default_state_dir

SECRET = "whsec_chaos_" + "c" * 20
MEMBERS = (("api", "batches,contacts"), ("decider", "decider"), ("projector", "projector"))
MEMBERS += (("stripe", "stripe"),)
RELAXED = {
    "COUPONS_THROTTLE_FAILURES": "1000000",
    "COUPONS_THROTTLE_ADDRESS_FAILURES": "1000000",
    "COUPONS_THROTTLE_KEY_FAILURES": "1000000",
}


@dataclass
class Row:
    fault: str
    recovered_s: float | None = None
    """From the fault's end until all three below."""
    ready_s: float | None = None
    """... until every process answers `/readyz` 200."""
    accepted_s: float | None = None
    """... until a redemption sent from then on (retried until answered) is accepted."""
    ledger_s: float | None = None
    """... until a paid invoice delivered from then on (retried until 2xx) is in the ledger."""
    note: str = ""


async def recovered(rig: Rig, since: float, timeout_s: float) -> Row:
    """The seconds from `since` (the fault's end) until every process is ready, a redemption
    sent from then on is accepted, and a paid invoice delivered from then on is in the
    ledger."""
    row = Row("")
    deadline = since + timeout_s

    async def ready() -> None:
        await rig.fleet.ready(timeout_s=timeout_s)
        row.ready_s = time.monotonic() - since

    async def accepted() -> None:
        auth = {"Authorization": f"Bearer {rig.probes.api_key}"}
        async with httpx.AsyncClient(headers=auth, timeout=30) as http:
            if await rig.probes.redeem_next(http) is None:
                raise RuntimeError(f"the probe redemption was refused: {rig.probes.refused}")
        row.accepted_s = time.monotonic() - since

    async def in_the_ledger() -> None:
        async with httpx.AsyncClient(base_url=rig.webhooks.base_url, timeout=30) as http:
            invoice = await rig.webhooks.deliver(http)
        while True:
            if await in_ledger(rig.settings.database_url, invoice):
                row.ledger_s = time.monotonic() - since
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(
        asyncio.gather(ready(), accepted(), in_the_ledger()), deadline - time.monotonic()
    )
    row.recovered_s = time.monotonic() - since
    return row


async def in_ledger(database_url: str, redemption_id: str) -> bool:
    try:
        conn = await asyncpg.connect(database_url)
    except (OSError, asyncpg.PostgresError):
        return False  # still starting
    try:
        query = "SELECT 1 FROM ledger WHERE redemption_id = $1"
        return bool(await conn.fetchval(query, redemption_id))
    finally:
        await conn.close()


async def define(http: httpx.AsyncClient, code: str, **rules: object) -> str:
    body = {
        "name": f"Chaos {code}",
        "code": code,
        "discount": {"kind": "amount", "amount_off": 100, "currency": "EUR"},
        **rules,
    }
    created = await http.post("/v1/campaigns", json=body)
    created.raise_for_status()
    return str(created.json()["id"])


async def rehearse(rig: Rig, args: argparse.Namespace) -> list[Row]:
    rows = []
    chosen = [(n, f) for n, f in FAULTS if re.search(args.only, n, re.IGNORECASE)]
    for name, fault in chosen * args.repeat:
        await asyncio.sleep(args.settle_s)
        print(f"fault: {name}", flush=True)
        ended = await fault(rig)
        try:
            row = await recovered(rig, ended, args.recovery_timeout_s)
        except (TimeoutError, RuntimeError) as error:
            row = Row(name, note=f"NOT RECOVERED: {error}"[:300])
            if "Kafka" in name:  # what an operator would do next
                await asyncio.to_thread(rig.broker.stop)
                await asyncio.to_thread(rig.broker.start)
                row.note += "; broker restarted by hand"
            for member in rig.fleet.members:
                if not rig.fleet.alive(member):
                    rig.fleet.start(member)
            await rig.fleet.ready(timeout_s=args.recovery_timeout_s)
        row.fault = name
        rows.append(row)
        print(f"  {row}", flush=True)
    return rows


async def check(
    rig: Rig, campaigns: dict[str, str], cap: int, http: httpx.AsyncClient
) -> list[str]:
    """Every guarantee after the run; the problems found."""
    per_contact, capped = rig.checkouts
    problems = [f"bare 5xx: {e}" for e in (per_contact.errors + capped.errors)[:5]]
    problems += [f"probe: {e}" for e in rig.probes.errors[:5]]
    problems += [f"webhook: {e}" for e in rig.webhooks.errors[:5]]
    # a webhook is answered once it is on the Stripe topic: wait for its translation, then
    # for the projections, before reading the log
    await audit.stripe_handled(rig.settings, rig.webhooks.delivered)
    await audit.projections_caught_up(rig.settings)
    events = await audit.logged_events(rig.settings)
    checks = (
        (
            "per-contact campaign",
            campaigns["CHAOS"],
            {*per_contact.redemptions.values(), *rig.probes.redemptions.values()},
        ),
        ("capped campaign", campaigns["CHAOSCAP"], set(capped.redemptions.values())),
        ("Stripe invoices", campaigns["CHAOSSTRIPE"], set(rig.webhooks.delivered.values())),
    )
    for what, campaign_id, accepted in checks:
        logged = audit.redeemed(events, campaign_id)
        ledger = await audit.ledger_ids(rig.settings, [campaign_id])
        problems += audit.exactly_once(what, accepted, [e.redemption_id for e in logged], ledger)
        for _ in range(50):  # the API's view folds the last events within moments
            usage = (await http.get(f"/v1/campaigns/{campaign_id}")).json()["usage"]
            if usage["redemptions"] == len(logged):
                break
            await asyncio.sleep(0.2)
        if usage["redemptions"] != len(logged):
            problems.append(
                f"{what}: the view counts {usage['redemptions']}, the log {len(logged)}"
            )
        print(
            f"  {what}: {len(accepted)} accepted, {len(logged)} in the log, {len(ledger)} in "
            f"the ledger",
            flush=True,
        )
    logged = audit.redeemed(events, campaigns["CHAOS"])
    problems += audit.per_contact_exact("per-contact campaign", logged, 1)
    tried = {load.contact_of(n) for load in (per_contact, rig.probes) for n in range(load._next)}
    if {e.contact_id for e in logged} != tried:
        problems.append("per-contact campaign: a contact that tried has no redemption")
    if set(per_contact.refused.values()) - {"per_contact_limit"}:
        problems.append(f"per-contact campaign refused {set(per_contact.refused.values())}")
    if capped._next <= cap:
        problems.append(f"capped campaign: {capped._next} tries never reached the cap: lower --cap")
    elif len(capped.redemptions) != cap or set(capped.refused.values()) != {"exhausted"}:
        refusals = sorted(set(capped.refused.values()))
        problems.append(f"capped campaign: {len(capped.redemptions)} accepted of {cap}, {refusals}")
    problems += await audit.read_models_equal_a_rebuild(rig.settings)
    return problems


async def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    state = args.state_dir
    disk = state / "kafka" / "data"
    stop_leftover_kafka(state)  # a broker of a killed run holds the tmpfs
    mount_disk(disk, args.disk_mib)
    problems = ["did not finish"]
    try:
        async with deployed(
            state,
            "chaos",
            kafka_port=args.kafka_port,
            pg_port=args.pg_port,
            partitions=args.partitions,
            env={"STRIPE_WEBHOOK_SECRET": SECRET},
        ) as deployment:
            rows, problems = await rehearsed(deployment, disk, args)
    finally:
        if problems:  # keep Kafka's data for a post-mortem; the next run unmounts it
            print(f"Kafka's log directory is kept on the tmpfs at {disk}")
        else:
            await asyncio.to_thread(subprocess.run, ["umount", disk], check=False)
    print(
        "\n| fault | recovered after | all processes ready | a redemption accepted "
        "| a paid invoice in the ledger | note |\n|---|---|---|---|---|---|"
    )
    for r in rows:
        cells = [r.recovered_s, r.ready_s, r.accepted_s, r.ledger_s]
        shown = " | ".join(f"{c:.1f} s" if c is not None else "-" for c in cells)
        print(f"| {r.fault} | {shown} | {r.note} |")
    print(f"\nlogs: {deployment.log_dir}; took {time.monotonic() - started:.0f} s")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("every check passed" if not problems else f"{len(problems)} checks failed")
    return 1 if problems or any(r.recovered_s is None for r in rows) else 0


async def rehearsed(
    deployment: Deployment, disk: Path, args: argparse.Namespace
) -> tuple[list[Row], list[str]]:
    """Start the fleet, put it under load, inject every fault, then check every guarantee:
    the rows of the faults and the problems found."""
    fleet, broker, database = deployment.fleet, deployment.broker, deployment.database
    settings, tag = deployment.settings, deployment.tag
    for n, (name, components) in enumerate(MEMBERS):
        fleet.add(name, components, args.http_port + n, deployment.log_dir)
    fleet.start("api")  # it migrates the schema first
    await fleet.ready(["api"])
    for name, _ in MEMBERS[1:]:
        fleet.start(name)
    await fleet.ready()
    api = fleet.members["api"].base_url
    key = create_key(settings.database_url, "admin", "chaos")
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api, headers=auth, timeout=30) as http:
        campaigns = {
            "CHAOS": await define(http, f"CHAOS{tag}", limits={"per_contact": 1}),
            "CHAOSCAP": await define(
                http,
                f"CHAOSCAP{tag}",
                limits={"max_redemptions": args.cap, "per_contact": None},
            ),
            "CHAOSSTRIPE": await define(http, f"CHAOSSTRIPE{tag}", limits={"per_contact": None}),
        }
        checkouts = [
            CheckoutLoad(api, key, f"CHAOS{tag}", 6, "pc-", lambda n: f"c{n // 2}"),
            CheckoutLoad(api, key, f"CHAOSCAP{tag}", 2, "cap-"),
        ]
        webhooks = WebhookLoad(api, SECRET, campaigns["CHAOSSTRIPE"], f"CHAOSSTRIPE{tag}")
        probes = CheckoutLoad(api, key, f"CHAOS{tag}", 1, "probe-", lambda n: f"probe{n}")
        rig = Rig(fleet, broker, database, settings, checkouts, probes, webhooks, disk, args.down_s)
        running = [asyncio.create_task(c.run(10_000_000, 0.1)) for c in checkouts]
        running.append(asyncio.create_task(webhooks.run(0.2)))
        rows = await rehearse(rig, args)
        await asyncio.sleep(args.settle_s)
        for load in checkouts:
            load.stop()
        webhooks.stop()
        await asyncio.wait_for(asyncio.gather(*running), args.recovery_timeout_s)
        problems = await check(rig, campaigns, args.cap, http)
    return rows, problems


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kafka-port", type=int, default=30592)
    parser.add_argument("--pg-port", type=int, default=30932)
    parser.add_argument("--http-port", type=int, default=30950, help="the first of four")
    parser.add_argument("--state-dir", type=Path, default=default_state_dir() / "chaos")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--cap", type=int, default=400, help="the capped campaign's limit")
    parser.add_argument("--down-s", type=float, default=10, help="how long a dependency is down")
    parser.add_argument("--settle-s", type=float, default=5, help="load between two faults")
    parser.add_argument("--disk-mib", type=int, default=1024, help="Kafka's log dir budget")
    parser.add_argument("--recovery-timeout-s", type=float, default=120)
    parser.add_argument("--only", default="", help="only the faults whose name matches this regex")
    parser.add_argument("--repeat", type=int, default=1, help="inject the faults this many times")
    sys.exit(asyncio.run(main(parser.parse_args())))

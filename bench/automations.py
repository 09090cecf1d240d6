"""Automations (issue 19): trigger latency at a steady event rate, and a broadcast to a
static segment. Prints figures; medians of --runs.

    python bench/automations.py [--rate E] [--seconds S] [--automations A]
                                [--broadcast N] [--runs R] [--warmup W] [--no-analyze]
                                [--workers W] [--apart COMPONENT]

A `coupons serve` process (components decider, projector, contacts; global cap off:
COUPONS_AUTOMATION_CONTACT_CAP=0; with --apart C two: C in a process of its own, the rest in
the other) runs against a local Kafka and PostgreSQL of its own
(`bench/service.py`; ports 30592/30932 or COUPONS_KAFKA_PORT and COUPONS_PG_PORT, state
<state dir>/automations-bench, or KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL).
0. Warm-up (--warmup, 30 s by default): events at the same rate, not counted; the fresh
   broker's JIT compiles its hot paths meanwhile. Then `ANALYZE` (--no-analyze: not): the
   database was created seconds before and grew from nothing, so PostgreSQL's statistics and
   the plans cached from them are those of near-empty tables (the sender's statements
   scanning the whole of `automation_runs`) until autovacuum's first visit, within a minute
   in any running deployment (docs/performance/automations.md, session 19).
1. Trigger latency: A active automations, each on its own shared-code campaign, with an
   event trigger on its own event type (every other one with a simple condition that holds).
   E contact events a second for S seconds are produced straight to
   `growthos.contact-events.v1`, each for a new contact, their types spread over the
   automations. Latency = the `coupon.issued.v1` record consumed (read_committed, the
   bench's consume time) - the event's append acknowledged, matched by contact id; the
   same against the record's Kafka timestamp (the decider's produce time, before its
   transaction commits) is printed too. Events lost = acknowledged events with no record.
   Where the time goes, p50 and p99 of each stage (epoch clocks of one machine): event
   acknowledged -> run recorded (`automation_runs.created_at`: the contacts processor) ->
   claimed by the sender (`claimed_at`, the start of its claim: the sender's queue) ->
   decided (the record's `occurred_at`: the claim's transaction and verdicts, the gateway,
   the decider's queue) -> consumed (the decider's transaction, the bench's consumer); and,
   beside them, decided -> outcome recorded (`decided_at`: the batch's last reply, then the
   sender's write of its outcomes). The CPU per event of the service, PostgreSQL and Kafka
   (user and system, from the first event to the last record).
2. Broadcast: a static segment of N contact ids uploaded as CSV in chunks of 20,000 ids
   (under the 512 KiB body limit), then `POST /v1/broadcasts`; seconds from the request
   until `status == done` with every run `sent`.
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from loads import process_ticks, stack_processes
from markers import end_offsets, markers
from service import Served, serving

from contracts.topics import Topics, declare
from services.coupons.bus import kafka as bus
from services.devstack.stack import default_state_dir

NAME = "automations-bench"
"""Its state directory's name, under the local state directory."""
PARTITIONS = 6
COMPONENTS = ("decider", "projector", "contacts")
CHUNK = 20_000
QUIET_S = 30.0
"""After the last event, how long with no new `coupon.issued.v1` record before the rest
count as lost."""


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def figures(values: list[float]) -> str:
    return " ".join(f"p{q} {pct(values, q / 100):.0f} ms" for q in (50, 95, 99))


@dataclass(frozen=True)
class Record:
    """A `coupon.issued.v1` record as the bench consumed it."""

    consumed: float
    """Monotonic."""
    consumed_epoch: float
    stamped: float
    """Its Kafka timestamp (the decider's produce time), epoch seconds."""
    decided: float
    """Its envelope's `occurred_at` (the decision's time), epoch seconds."""


class Heard:
    """Every `coupon.issued.v1` record consumed, by contact id."""

    def __init__(self, topics: Topics, kafka: str) -> None:
        self.at: dict[str, Record] = {}
        self._consumer: AIOKafkaConsumer = bus.reader(kafka)
        self._topic = topics.issued.name

    async def listen(self) -> None:
        self._consumer.subscribe([self._topic])
        await self._consumer.start()
        try:
            while True:
                for records in (await self._consumer.getmany(timeout_ms=200)).values():
                    now, epoch = time.monotonic(), time.time()
                    for r in records:
                        body = json.loads(r.value)
                        decided = datetime.fromisoformat(body["occurred_at"]).timestamp()
                        found = Record(now, epoch, r.timestamp / 1000, decided)
                        self.at.setdefault(body["data"]["contact_id"], found)
        finally:
            await self._consumer.stop()


async def until(check: Any, every_s: float = 0.2) -> None:
    """Poll `check` (an async predicate) every `every_s` until it holds."""
    done = False
    while not done:
        done = await check()
        await asyncio.sleep(0 if done else every_s)


async def trigger_latency(
    args: argparse.Namespace,
    out: AIOKafkaProducer,
    topics: Topics,
    heard: Heard,
    db: str,
    run: int,
) -> dict[str, Any]:
    acked: dict[str, tuple[float, float]] = {}  # contact -> (monotonic, epoch) acknowledged
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < args.seconds:
        due = started + n / args.rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        contact = f"t{run}-{n:07d}"
        body = {
            "id": f"e{run}-{n}",
            "type": f"bench.event{n % args.automations}",
            "contact_id": contact,
            "occurred_at": iso(time.time()),
            "traits": {"score": n % 100},
        }
        sent = await out.send(
            topics.contact_events.name, json.dumps(body).encode(), key=contact.encode()
        )
        sent.add_done_callback(
            lambda _f, c=contact: acked.__setitem__(c, (time.monotonic(), time.time()))
        )
        n += 1
    await out.flush()
    produced_s = time.monotonic() - started
    last, count = time.monotonic(), -1
    while time.monotonic() - last < QUIET_S:  # wait for every record, or a quiet spell
        found = sum(1 for c in acked if c in heard.at)
        if found == len(acked):
            break
        if found != count:
            last, count = time.monotonic(), found
        await asyncio.sleep(0.2)
    consumed = [(heard.at[c].consumed - t) * 1000 for c, (t, _) in acked.items() if c in heard.at]
    stamped = [(heard.at[c].stamped - w) * 1000 for c, (_, w) in acked.items() if c in heard.at]
    return {
        "events": n,
        "rate": n / produced_s,
        "sent": len(consumed),
        "lost": len(acked) - len(consumed),
        "consumed": consumed,
        "stamped": stamped,
        "stages": await stages(db, f"t{run}-", acked, heard),
    }


async def loop_lag(client: httpx.AsyncClient) -> dict[str, int]:
    """The service's event loop lag histogram so far (`/metrics`): cumulative count per
    upper bound."""
    text = (await client.get("/metrics")).text
    found = re.findall(r'^coupons_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\d+)$', text, re.M)
    return {bound: int(n) for bound, n in found}


def lag_figures(before: dict[str, int], after: dict[str, int]) -> str:
    """p50 and p99 of the loop's lag between two histograms, as the bucket bounds they fall
    under."""
    counts = {bound: after[bound] - before.get(bound, 0) for bound in after}
    total = counts.get("+Inf", 0)
    if not total:
        return "no samples"

    def under(q: float) -> str:
        bound = next(b for b, n in counts.items() if n >= q * total)
        return "over 5 s" if bound == "+Inf" else f"<= {float(bound) * 1000:.0f} ms"

    return f"p50 {under(0.5)}, p99 {under(0.99)} ({total} samples)"


def cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user and system, with children) used so far by each named process: on a
    shared machine, a steadier measure of the path's cost than its latency."""
    return {name: process_ticks(pid) / os.sysconf("SC_CLK_TCK") for name, pid in processes.items()}


STAGES = {
    "recorded": "event -> run recorded (contacts processor)",
    "claimed": "recorded -> claimed (sender's queue)",
    "decided": "claimed -> decided (claim, gateway, decider's queue)",
    "consumed": "decided -> consumed (decider's transaction, consumer)",
    "outcome": "decided -> outcome recorded (batch's last reply, write)",
}


async def stages(
    db: str, prefix: str, acked: dict[str, tuple[float, float]], heard: Heard
) -> dict[str, list[float]]:
    """Each stage's durations (ms, the keys of STAGES) of the runs of contacts `prefix...`
    that were sent, from their rows in `automation_runs` and the records consumed."""
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            """SELECT contact_id, created_at, claimed_at, decided_at FROM automation_runs
               WHERE starts_with(contact_id, $1) AND status = 'sent'""",
            prefix,
        )
    finally:
        await conn.close()
    found: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for row in rows:
        record, (_, event) = heard.at.get(row["contact_id"]), acked.get(row["contact_id"], (0, 0))
        if record is None or not event or None in (row["created_at"], row["claimed_at"]):
            continue
        recorded, claimed = row["created_at"].timestamp(), row["claimed_at"].timestamp()
        found["recorded"].append((recorded - event) * 1000)
        found["claimed"].append((claimed - recorded) * 1000)
        found["decided"].append((record.decided - claimed) * 1000)
        found["consumed"].append((record.consumed_epoch - record.decided) * 1000)
        found["outcome"].append((row["decided_at"].timestamp() - record.decided) * 1000)
    return found


async def broadcast(client: httpx.AsyncClient, size: int, run: int) -> dict[str, Any]:
    segment, code = f"bcast{run}", f"BCAST{run}"
    (await client.post("/v1/campaigns", json=campaign_body(code))).raise_for_status()
    static = {"id": segment, "name": segment, "kind": "static"}
    (await client.post("/v1/segments", json=static)).raise_for_status()
    started = time.monotonic()
    added = 0
    for first in range(0, size, CHUNK):
        rows = "\n".join(f"b{run}-{i:07d}" for i in range(first, min(size, first + CHUNK)))
        answer = await client.post(
            f"/v1/segments/{segment}/members",
            content=f"contact_id\n{rows}\n",
            headers={"Content-Type": "text/csv"},
        )
        answer.raise_for_status()
        added += answer.json()["added"]
    uploaded_s = time.monotonic() - started
    started = time.monotonic()
    body = {"campaign_id": code.lower(), "segment_id": segment, "source_ref": "bench"}
    answer = await client.post("/v1/broadcasts", json=body)
    answer.raise_for_status()
    path = f"/v1/broadcasts/{answer.json()['id']}"
    state: dict[str, Any] = {}

    async def done() -> bool:
        state.update((await client.get(path)).json())
        return bool(state["status"] == "done")

    await until(done, 0.1)
    return {
        "added": added,
        "uploaded_s": uploaded_s,
        "seconds": time.monotonic() - started,
        "total": state["total"],
        "by_status": state["progress"]["by_status"],
    }


def campaign_body(code: str) -> dict[str, Any]:
    return {
        "id": code.lower(),
        "name": f"Bench {code}",
        "code": code,
        "discount": {"kind": "amount", "amount_off": 500, "currency": "EUR"},
    }


async def define(client: httpx.AsyncClient, count: int) -> None:
    """`count` shared-code campaigns, each with an active automation on its own event type;
    every other one with a condition that holds for every bench event."""
    for k in range(count):
        code = f"AUTO{k:02d}"
        (await client.post("/v1/campaigns", json=campaign_body(code))).raise_for_status()
        automation = {
            "id": f"bench-{k}",
            "name": f"Bench {k}",
            "campaign_id": code.lower(),
            "trigger": {"kind": "event", "event_type": f"bench.event{k}"},
            "channel": "sequence",
            "source_ref": f"seq-{k}",
            "status": "active",
        }
        if k % 2:
            automation["condition"] = {">=": [{"var": "traits.score"}, 0]}
        made = await client.post("/v1/automations", json=automation)
        if made.status_code != 201:
            raise RuntimeError(f"automation refused: {made.text}")


async def analyze(database_url: str) -> None:
    """`ANALYZE` the service's database: the statistics a running deployment's autovacuum keeps,
    which a database created a minute ago lacks (see --help)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run(args: argparse.Namespace, served: Served) -> None:
    kafka, db = served.kafka, served.database_url
    topics = declare(served.prefix, PARTITIONS)
    client = httpx.AsyncClient(
        base_url=served.base_url,
        timeout=120,
        headers={"Authorization": f"Bearer {served.key}"},
    )
    out = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=1)
    heard = Heard(topics, kafka)
    listening = asyncio.create_task(heard.listen())
    processes = {
        "service" if n == 1 else f"service-{n}": pid for n, pid in enumerate(served.pids, start=1)
    } | stack_processes(default_state_dir() / NAME)
    try:
        await out.start()
        await define(client, args.automations)
        await asyncio.sleep(2)  # the consumer has its partitions; the service its automations
        if args.warmup > 0:  # the broker's JIT compiles its hot paths in its first minute
            warm = await trigger_latency(
                argparse.Namespace(**{**vars(args), "seconds": args.warmup}),
                out,
                topics,
                heard,
                db,
                -1,
            )
            print(
                f"warm-up, not counted: {args.warmup:.0f} s at {warm['rate']:,.0f} events/s,"
                f" p99 {pct(warm['consumed'], 0.99):.0f} ms",
                flush=True,
            )
        if args.analyze:
            await analyze(db)
        p99s, lost = [], 0
        stage_p99s: dict[str, list[float]] = {}
        for n in range(args.runs if args.seconds > 0 else 0):
            ends = [
                await end_offsets(kafka, t.name, PARTITIONS) for t in (topics.events, topics.issued)
            ]
            lag_before = await loop_lag(client)
            cpu_before = cpu_seconds(processes)
            found = await trigger_latency(args, out, topics, heard, db, n)
            cpu_after = cpu_seconds(processes)
            lag_after = await loop_lag(client)
            txns = [
                await markers(kafka, e, await end_offsets(kafka, next(iter(e)).topic, PARTITIONS))
                for e in ends
            ]
            per_event = {
                name: (cpu_after[name] - cpu_before[name]) * 1000 / max(found["events"], 1)
                for name in processes
            }
            cpu_ms = sum(v for name, v in per_event.items() if name.startswith("service"))
            p99s.append(pct(found["consumed"], 0.99))
            lost += found["lost"]
            print(
                f"trigger -> coupon.issued at {found['rate']:,.0f} events/s over"
                f" {args.automations} automations: {figures(found['consumed'])}"
                f" (consumed); {figures(found['stamped'])} (Kafka timestamp);"
                f" {found['sent']:,} sent of {found['events']:,}, {found['lost']} lost;"
                f" the service's CPU: {cpu_ms:.2f} ms per event",
                flush=True,
            )
            print(
                "  CPU per event, ms: " + ", ".join(f"{k} {v:.2f}" for k, v in per_event.items()),
                flush=True,
            )
            print(
                f"  the service's event loop, late by: {lag_figures(lag_before, lag_after)}",
                flush=True,
            )
            print(
                f"  the writers' transactions (markers on the events topic): {txns[0]:,},"
                f" {found['events'] / max(txns[0], 1):.1f} events each; markers on"
                f" coupon.issued.v1: {txns[1]:,}, {txns[1] / max(txns[0], 1):.2f} a transaction",
                flush=True,
            )
            for stage, label in STAGES.items():
                values = found["stages"][stage]
                stage_p99s.setdefault(stage, []).append(pct(values, 0.99))
                print(f"  {label}: {figures(values)}", flush=True)
        if p99s:
            print(
                f"trigger latency p99: {statistics.median(p99s):.0f} ms (median of"
                f" {len(p99s)}; target <= 500 ms); events lost: {lost}",
                flush=True,
            )
            medians = (f"{stage} {statistics.median(v):.0f}" for stage, v in stage_p99s.items())
            print(f"  stage p99s, ms (medians): {', '.join(medians)}", flush=True)
        seconds = []
        for n in range(args.runs if args.broadcast > 0 else 0):
            found = await broadcast(client, args.broadcast, n)
            seconds.append(found["seconds"])
            print(
                f"broadcast to {found['total']:,} (uploaded {found['added']:,} in"
                f" {found['uploaded_s']:.1f} s): done in {found['seconds']:.1f} s,"
                f" {found['by_status']}",
                flush=True,
            )
        if seconds:
            print(
                f"broadcast of {args.broadcast:,}: {statistics.median(seconds):.1f} s"
                f" (median of {len(seconds)}; target <= 60 s)",
                flush=True,
            )
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await out.stop()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000, help="contact events a second")
    parser.add_argument("--seconds", type=float, default=30, help="0: no latency phase")
    parser.add_argument("--automations", type=int, default=20)
    parser.add_argument("--broadcast", type=int, default=100_000, help="0: no broadcast")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup",
        type=float,
        default=30,
        help="seconds of events at --rate before the runs, not counted (a fresh broker's JIT)",
    )
    parser.add_argument(
        "--analyze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ANALYZE the database after the warm-up, as autovacuum would have by then",
    )
    parser.add_argument("--log", help="write the service's log lines to this file")
    parser.add_argument(
        "--workers", type=int, default=1, help="COUPONS_WORKERS: processes of the service"
    )
    parser.add_argument(
        "--apart",
        choices=COMPONENTS,
        help="two processes: this component in one, the others in the other",
    )
    args = parser.parse_args()
    components = ",".join(c for c in COMPONENTS if c != args.apart)
    with serving(
        NAME,
        kafka_port=int(os.environ.get("COUPONS_KAFKA_PORT", "30592")),
        pg_port=int(os.environ.get("COUPONS_PG_PORT", "30932")),
        env={
            "COUPONS_PARTITIONS": str(PARTITIONS),
            "COUPONS_COMPONENTS": components,
            "COUPONS_AUTOMATION_CONTACT_CAP": "0",
            "COUPONS_WORKERS": str(args.workers),
        },
        log=Path(args.log) if args.log else None,
        siblings=[{"COUPONS_COMPONENTS": args.apart}] if args.apart else [],
    ) as served:
        asyncio.run(run(args, served))


if __name__ == "__main__":
    main()

"""Where a redemption's time goes: per-step medians at low rates, and one redemption's steps.

Serves the engine (one worker) through `bench/tracing.py`, which stamps each step of a
redemption, sends redemptions of one shared code in the open loop (`bench/openloop`) at each
of `--rates` for `--seconds`, then joins the stamps by Idempotency-Key and command id:

  1 API          request arrived -> command handed to the gateway (auth, parse, look-up)
  2 to decider   handed over (local socket) -> decided by the partition's writer
  3 queued       decided -> its batch's transaction starts (the one in flight commits first)
  4 transaction  start -> EndTxn answered; of which the client-side round trips of
                 AddPartitionsToTxn (when not begun ahead), Produce and EndTxn, and the rest
                 (Python between them: aiokafka's sender task, the event loop)
  5 after commit EndTxn answered -> its reply (the memo, the campaign view's fold, the
                 replies of the batch's earlier commands)
  6 reply        the decider's reply -> the gateway's wait resolved
  7 answer       the gateway returns -> the response starts (the answer's model, JSON)

Kafka and PostgreSQL as `bench/checkout.py` provisions them (BENCH_KAFKA_PORT, BENCH_PG_PORT,
BENCH_STATE_DIR). The stamps cost a few microseconds each; the figures are the client's.
"""

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import targets
from checkout import KAFKA_PORT, PG_PORT
from loads import Load

from services.devstack.stack import default_state_dir, provisioned

STEPS = (
    "1 API",
    "2 to decider",
    "3 queued",
    "4 transaction",
    "  4a AddPartitionsToTxn",
    "  4b Produce",
    "  4c EndTxn",
    "  4d between them",
    "5 after commit",
    "6 reply",
    "7 answer",
    "server total",
)


@dataclass(frozen=True)
class Request:
    name: str
    tid: str | None
    sent: float
    answered: float


class Trace:
    """The stamps of one run, indexed for the joins."""

    def __init__(self, records: list[list[Any]]) -> None:
        self.http = {r[1]: (r[2], r[3]) for r in records if r[0] == "http"}
        self.gateway = {r[1]: (r[2], r[3], r[4]) for r in records if r[0] == "gateway"}
        self.decided = {r[1]: r[2] for r in records if r[0] == "decided"}
        self.replied = {r[1]: r[2] for r in records if r[0] == "reply"}
        self.commit_of = {c: (r[1], len(r[2]), r[3], r[4]) for r in records if r[0] == "commit"
                          for c in r[2]}  # fmt: skip
        self.requests: dict[str | None, list[Request]] = defaultdict(list)
        for r in records:
            if r[0] == "kafka":
                self.requests[r[2]].append(Request(r[1], r[2], r[3], r[4]))
        self.commits = [(r[1], r[3], r[4]) for r in records if r[0] == "commit"]

    def produce_waits(self, start: float, end: float) -> dict[bool, list[float]]:
        """For each transaction started in [start, end], the ms from its start (begun ahead)
        or from its AddPartitionsToTxn's answer (not) to its first Produce sent."""
        found: dict[bool, list[float]] = {True: [], False: []}
        for tid, started, ended in self.commits:
            if not start <= started <= end:
                continue
            mine = [r for r in self.requests[tid] if started <= r.sent and r.answered <= ended]
            produce = next((r for r in mine if r.name == "ProduceRequest"), None)
            add = [r for r in mine if r.name == "AddPartitionsToTxnRequest"]
            if produce is not None:
                since = add[-1].answered if add else started
                found[not add].append((produce.sent - since) * 1000)
        return found

    def steps(self, key: str) -> dict[str, float] | None:
        """One redemption's steps, in ms; None if a stamp is missing."""
        try:
            arrived, answered = self.http[key]
            command, handed, returned = self.gateway[key]
            decided, replied = self.decided[command], self.replied[command]
            tid, _, started, ended = self.commit_of[command]
        except KeyError:
            return None
        mine = [r for r in self.requests[tid] if started <= r.sent and r.answered <= ended]
        end = next((r for r in mine if r.name == "EndTxnRequest"), None)
        if end is None:
            return None

        def rtt(name: str) -> float:
            return sum(r.answered - r.sent for r in mine if r.name == name)

        found = {
            "1 API": handed - arrived,
            "2 to decider": decided - handed,
            "3 queued": started - decided,
            "4 transaction": end.answered - started,
            "  4a AddPartitionsToTxn": rtt("AddPartitionsToTxnRequest"),
            "  4b Produce": rtt("ProduceRequest"),
            "  4c EndTxn": rtt("EndTxnRequest"),
            "5 after commit": replied - end.answered,
            "6 reply": returned - replied,
            "7 answer": answered - returned,
            "server total": answered - arrived,
        }
        parts = found["  4a AddPartitionsToTxn"] + found["  4b Produce"] + found["  4c EndTxn"]
        found["  4d between them"] = found["4 transaction"] - parts
        return {step: ms * 1000 for step, ms in found.items()}

    def timeline(self, key: str) -> list[tuple[float, str]]:
        """One redemption's stamps, in ms from its arrival, with its transaction's requests."""
        arrived, answered = self.http[key]
        command, handed, returned = self.gateway[key]
        tid, size, started, ended = self.commit_of[command]
        found = [
            (arrived, "request arrived (ASGI)"),
            (handed, "gateway: command handed over"),
            (self.decided[command], "decider: decided"),
            (started, f"decider: its transaction starts ({size} commands, {tid})"),
            (self.replied[command], "decider: reply"),
            (returned, "gateway: reply received"),
            (answered, "response starts"),
        ]
        for r in self.requests[tid]:  # from its decision: a transaction begun ahead, too
            if self.decided[command] <= r.sent and r.answered <= ended:
                found.append((r.sent, f"  {r.name} sent"))
                found.append((r.answered, f"  {r.name} answered"))
        return sorted((round((t - arrived) * 1000, 2), what) for t, what in found)


def report(trace: Trace, rates: list[int], windows: dict[int, tuple[float, float, Any]]) -> None:
    medians: dict[int, dict[str, float]] = {}
    for rate in rates:
        start, end, found = windows[rate]
        keys = [k for k, (arrived, _) in trace.http.items() if start <= arrived <= end]
        rows = [s for s in (trace.steps(k) for k in keys) if s is not None]
        sizes = [trace.commit_of[trace.gateway[k][0]][1] for k in keys if k in trace.gateway]
        medians[rate] = {step: statistics.median(r[step] for r in rows) for step in STEPS}
        waits = trace.produce_waits(start, end)
        ahead, other = waits[True] or [0.0], waits[False] or [0.0]
        share = len(waits[True]) / max(len(waits[True]) + len(waits[False]), 1)
        p99 = statistics.quantiles([r["server total"] for r in rows], n=100)[98]
        print(
            f"{rate}/s: {len(rows)} of {len(keys)} redemptions traced; client p50"
            f" {found['p50']:.1f} ms, p99 {found['p99']:.1f} ms; server p99 {p99:.1f} ms;"
            f" commands per transaction (median) {statistics.median(sizes or [0])}\n"
            f"  transactions begun ahead {share:.0%}: first Produce sent"
            f" {statistics.median(ahead):.2f} ms after the start (median), against"
            f" {statistics.median(other):.2f} ms after the AddPartitionsToTxn answer otherwise"
        )
    print("\nper-step medians, ms:")
    print(f"  {'step':<26}" + "".join(f"{rate:>8}/s" for rate in rates))
    for step in STEPS:
        print(f"  {step:<26}" + "".join(f"{medians[rate][step]:>10.2f}" for rate in rates))
    start, end, _ = windows[rates[0]]
    keys = [k for k, (arrived, _) in trace.http.items() if start <= arrived <= end]
    totals = sorted((s["server total"], k) for k in keys if (s := trace.steps(k)))
    if totals:
        key = totals[len(totals) // 2][1]
        print(f"\none redemption at {rates[0]}/s (the median server total), ms from its arrival:")
        for at, what in trace.timeline(key):
            print(f"  {at:8.2f}  {what}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--rates", type=lambda s: [int(r) for r in s.split(",")], default=[50, 100, 200, 300]
    )
    parser.add_argument("--seconds", type=int, default=10, help="each rate's duration")
    parser.add_argument("--warm-up", type=int, default=20, help="seconds at the highest rate")
    args = parser.parse_args()
    state_dir = Path(os.environ.get("BENCH_STATE_DIR") or default_state_dir() / "bench")
    state_dir.mkdir(parents=True, exist_ok=True)
    trace_file = state_dir / "trace.jsonl"
    trace_file.unlink(missing_ok=True)
    windows = {}
    with (
        provisioned(
            state_dir, kafka_port=KAFKA_PORT, pg_port=PG_PORT, database="coupons_bench"
        ) as endpoints,
        targets.engine(
            endpoints,
            state_dir,
            workers=1,
            campaigns=1,
            command=("bench/tracing.py",),
            extra_env={"COUPONS_TRACE_FILE": str(trace_file)},
        ) as engine,
    ):
        Load("redemptions", rate=max(args.rates)).run(engine.base_url, args.warm_up, engine.env)
        for rate in args.rates:
            engine.settle()
            average = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"{rate}/s for {args.seconds} s, load average {average}", flush=True)
            started = time.time()
            found = Load("redemptions", rate=rate).run(engine.base_url, args.seconds, engine.env)
            windows[rate] = (started, time.time(), found)
    records = [json.loads(line) for line in trace_file.read_text().splitlines()]
    report(Trace(records), args.rates, windows)


if __name__ == "__main__":
    main()

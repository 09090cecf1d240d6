"""Checkout throughput and latency: the engine beside a row-lock peer and the floor.

Three servers on the same machine, each a process of its own (`bench/targets.py`): the engine
(`coupons serve` on a fresh database and topic prefix, with one shared-code campaign, or
`--campaigns` of them, each request taking the next one's code); the row-lock peer
(`bench/peer.py`: FastAPI + asyncpg, the coupon row `SELECT ... FOR UPDATE` per redemption, on
the same PostgreSQL); and the floor (`bench/floor.py`: the same HTTP stack answering a fixed
body). Every phase runs against each of them in turn (engine, peer, floor, then the next
phase), so the three share the same minutes of a machine whose speed drifts. The loads
(`bench/loads.py`): validations and redemptions in wrk's closed loop (C keep-alive
connections), and redemptions in `bench/openloop`'s open loop at each of `--rates`; every
request has its own contact, order and Idempotency-Key. A phase runs for `--seconds` after a
2 s warm-up, once the engine's projections have caught up. Before the first run each phase
warms up for `--warm-up` seconds on the engine (5 s on the others): a freshly started JVM
spends a minute or more compiling. CPU is % of the whole machine during a phase: the server
under test, the broker and the database server (when this script started them), the load
generator, and all busy time (anything else running shows as the difference).

Kafka and PostgreSQL are provisioned on BENCH_KAFKA_PORT and BENCH_PG_PORT (default 30192 and
30532) in BENCH_STATE_DIR (default: the local state directory's `bench/`), unless
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set.
"""

import argparse
import contextlib
import os
import resource
import statistics
from dataclasses import dataclass
from pathlib import Path

import targets
from loads import Load, cpu_ticks, stack_processes
from targets import Target

from services.devstack.stack import default_state_dir, provisioned

# below the ephemeral range (32768+), so no outgoing connection holds them
KAFKA_PORT = int(os.environ.get("BENCH_KAFKA_PORT", "30192"))  # `make run`: 19092, tests: 29092
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "30532"))  # `make run`: 15432, tests: 25432
TARGETS = ("engine", "peer", "floor")


@dataclass(frozen=True)
class Phase:
    target: str
    load: str
    requests: int
    seconds: float
    latency_ms: dict[int, float]  # percentile -> ms, as the load generator reports them
    unexpected: int  # responses that were not 2xx, and socket errors
    effects: int  # redemptions the server counted during the phase (one per request)
    cpu: dict[str, float]  # % of all CPUs

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        """The server's CPU per answered request, in µs: it holds on a busy machine, where
        throughput follows the other processes' load."""
        cpu_s = self.cpu[self.target] / 100 * (os.cpu_count() or 1) * self.seconds
        return cpu_s / max(self.requests, 1) * 1e6

    def line(self) -> str:
        cpu = " ".join(f"{k} {v:.1f}%" for k, v in self.cpu.items())
        latency = "  ".join(f"p{p} {ms:6.1f}" for p, ms in self.latency_ms.items())
        return (
            f"{self.target:<6} {self.load:<24} {self.throughput:6.0f} req/s  {latency} ms"
            f"  {self.cpu_us:5.0f} µs CPU/req  unexpected: {self.unexpected}"
            f"  effects: {self.effects}  cpu: {cpu}"
        )


def phase(args: argparse.Namespace, target: Target, load: Load, stack: dict[str, int]) -> Phase:
    """One phase. A redemption phase counts the server's redemptions before and after: each
    request answered is one new redemption (a repeated key would be answered without one), plus
    at most one per connection still in flight when wrk stopped."""
    load.run(target.base_url, 2, target.env)  # warm-up
    target.settle()
    redeemed = target.redemptions()
    processes = {target.name: target.pid} | stack
    client, before = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_ticks(processes)
    found = load.run(target.base_url, args.seconds, target.env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    target.settle()  # the requests in flight when wrk stopped
    effects = target.redemptions() - redeemed
    ticks = {k: v - before[k] for k, v in cpu_ticks(processes).items()}
    seconds = found["seconds"]
    per_cent = 100 / ((os.cpu_count() or 1) * seconds)  # CPU seconds -> % of the machine
    client_s = after.ru_utime + after.ru_stime - client.ru_utime - client.ru_stime
    cpu = {k: ticks[k] / os.sysconf("SC_CLK_TCK") for k in processes} | {"load": client_s}
    busy = 100 * ticks["busy"] / max(ticks["total"], 1)
    cpu = {k: v * per_cent for k, v in cpu.items()} | {"busy": busy}
    latency = {p: found[f"p{p}"] for p in (50, 90, 99)}
    return Phase(
        target.name, load.label, found["requests"], seconds, latency, found["bad"], effects, cpu
    )


def loads(args: argparse.Namespace) -> list[Load]:
    found = [
        Load("validations", connections=args.validations_connections),
        Load("redemptions", connections=args.redemptions_connections),
        *(Load("redemptions", rate=rate) for rate in args.rates),
    ]
    return [load for load in found if load.connections or load.rate]  # 0 skips a phase


def measure(args: argparse.Namespace, servers: list[Target], stack: dict[str, int]) -> list[Phase]:
    for load in loads(args):  # the broker's JIT compiler takes a minute or more to settle
        for target in servers:
            seconds = args.warm_up if target.name == "engine" else min(args.warm_up, 5)
            print(f"warm-up: {target.name} {load.label} for {seconds} s", flush=True)
            load.run(target.base_url, seconds, target.env)
    results = []
    for run in range(args.runs):
        for load in loads(args):
            average = " ".join(f"{x:.2f}" for x in os.getloadavg())  # 1, 5, 15 min
            print(f"run {run + 1}/{args.runs}, {load.label}: load average {average}", flush=True)
            for target in servers:
                results.append(phase(args, target, load, stack))
                print("    " + results[-1].line(), flush=True)
    return results


def summary(args: argparse.Namespace, results: list[Phase]) -> None:
    print(f"\nmedians over {args.runs} runs, engine with {args.workers} workers:")
    for load in loads(args):
        medians = {}
        for name in args.targets:
            runs = [r for r in results if r.load == load.label and r.target == name]
            throughput = statistics.median(r.throughput for r in runs)
            p50 = statistics.median(r.latency_ms[50] for r in runs)
            p99 = statistics.median(r.latency_ms[99] for r in runs)
            cpu_us = statistics.median(r.cpu_us for r in runs)
            medians[name] = (throughput, p50, p99, cpu_us)
            print(
                f"  {name:<6} {load.label:<24} {throughput:6.0f} req/s"
                f"  p50 {p50:6.1f}  p99 {p99:6.1f} ms  {cpu_us:5.0f} µs CPU/req"
            )
        if "engine" in medians:
            mine = medians["engine"]
            for other in (n for n in medians if n != "engine"):
                theirs = medians[other]
                ratios = "  ".join(
                    f"{what} {m / t:.2f}x" if t else f"{what} -"
                    for what, m, t in zip(
                        ("req/s", "p50", "p99", "µs CPU/req"), mine, theirs, strict=True
                    )
                )
                print(f"         engine / {other:<6} {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--targets",
        type=lambda s: s.split(","),
        default=list(TARGETS),
        help="which servers, in this order (default: engine,peer,floor)",
    )
    parser.add_argument(
        "--validations-connections", type=int, default=16, help="wrk's open connections (0: none)"
    )
    parser.add_argument(
        "--redemptions-connections", type=int, default=64, help="wrk's open connections (0: none)"
    )
    parser.add_argument(
        "--rates",
        type=lambda s: [int(r) for r in s.split(",") if int(r)],
        default=[50, 200, 500, 1000],
        help="redemptions a second of the open-loop phases (default 50,200,500,1000; 0: none)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="COUPONS_WORKERS of the engine (default 1, as `make run` serves)",
    )
    parser.add_argument(
        "--campaigns", type=int, default=1, help="campaigns (codes) the requests go to, in turn"
    )
    parser.add_argument("--seconds", type=int, default=10, help="each phase's duration")
    parser.add_argument(
        "--warm-up", type=int, default=30, help="seconds of each phase before the first run"
    )
    args = parser.parse_args()
    state_dir = Path(os.environ.get("BENCH_STATE_DIR") or default_state_dir() / "bench")
    state_dir.mkdir(parents=True, exist_ok=True)  # also holds the servers' logs
    with (
        provisioned(
            state_dir, kafka_port=KAFKA_PORT, pg_port=PG_PORT, database="coupons_bench"
        ) as endpoints,
        contextlib.ExitStack() as servers,
    ):
        started = {
            "engine": lambda: targets.engine(endpoints, state_dir, args.workers, args.campaigns),
            "peer": lambda: targets.peer(endpoints, state_dir, args.campaigns),
            "floor": lambda: targets.floor(state_dir),
        }
        running = [servers.enter_context(started[name]()) for name in args.targets]
        results = measure(args, running, stack_processes(state_dir))
    summary(args, results)


if __name__ == "__main__":
    main()

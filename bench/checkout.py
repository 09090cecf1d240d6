"""Checkout throughput and latency: validations and redemptions against a real service.

Provisions Kafka and PostgreSQL (or uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL), serves a
fresh database and topic prefix with one shared-code campaign (`--campaigns` for more, each
request taking the next one's code), and drives it with wrk (C
keep-alive connections, a fixed duration per phase after a 2 s warm-up and once every
projection has caught up; every request has its own contact, order and Idempotency-Key).
Before the first run each phase warms up for `--warm-up` seconds, so the figures are those of
a running broker: a freshly started JVM spends a minute or more compiling. wrk is written in
C, so the load generator takes little of the 2 cores the service shares with Kafka and
PostgreSQL. CPU is % of the whole machine during a phase: the service (with its
workers), the broker and the database server (when this script started them), wrk, and all
busy time (anything else running shows as the difference).
"""

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from services.devstack.stack import Endpoints, default_state_dir, provisioned

ROOT = Path(__file__).resolve().parent.parent
# below the ephemeral range (32768+), so no outgoing connection holds them
KAFKA_PORT, PG_PORT = 30192, 30532  # `make run`: 19092/15432, tests: 29092/25432
CODE = "BENCH-CHECKOUT"
DISCOUNT = {"kind": "amount", "amount_off": 500, "currency": "EUR"}
CAMPAIGN = {"name": "Bench", "discount": DISCOUNT, "limits": {"per_contact": None}}
OPENLOOP = ROOT / "bench" / "openloop"  # Go source of the open-loop load generator


@dataclass(frozen=True)
class Load:
    """How a phase drives an endpoint (under /v1/): wrk's closed loop over `connections`, each
    sending its next request when the last is answered (the throughput the service sustains),
    or the open loop at `rate` requests a second (the latency at that throughput). Both count
    non-2xx answers as bad."""

    endpoint: str
    connections: int = 0
    rate: int = 0

    @property
    def label(self) -> str:
        kind = f"{self.connections} conns" if self.connections else f"{self.rate}/s open"
        return f"{self.endpoint} {kind}"

    def run(self, base_url: str, seconds: int, env: dict[str, str]) -> dict[str, Any]:
        url = f"{base_url}/v1/{self.endpoint}"
        if self.connections:
            return wrk(url, seconds, self.connections, env)
        return open_loop(url, seconds, self.rate, env)


@dataclass(frozen=True)
class Phase:
    name: str
    requests: int
    seconds: float
    latency_ms: dict[int, float]  # percentile -> ms, as wrk reports them
    unexpected: int  # responses that were not 2xx, and socket errors
    effects: int  # redemptions the campaign counted during the phase (one per request)
    cpu: dict[str, float]  # % of all CPUs

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        cpu = " ".join(f"{k} {v:.0f}%" for k, v in self.cpu.items())
        latency = "  ".join(f"p{p} {ms:6.1f}" for p, ms in self.latency_ms.items())
        return (
            f"{self.name:<26} {self.throughput:6.0f} req/s  {latency} ms"
            f"  unexpected: {self.unexpected}  effects: {self.effects}  cpu: {cpu}"
        )


def cpu_ticks(processes: dict[str, int]) -> dict[str, int]:
    """Jiffies: each named process's (user + system, with its children), all CPUs' busy, all
    CPUs' total."""
    all_ = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    ticks = {name: process_ticks(pid) for name, pid in processes.items()}
    return ticks | {"busy": sum(all_) - all_[3] - all_[4], "total": sum(all_)}


def stack_processes(state_dir: Path) -> dict[str, int]:
    """The broker's and the database server's pids, when this script started them."""
    found = {}
    for name, pid_file in (
        ("kafka", "kafka/broker.pid"),
        ("postgres", "postgres/data/postmaster.pid"),
    ):
        path = state_dir / pid_file
        if path.exists():
            found[name] = int(path.read_text().split()[0])
    return found


def process_ticks(pid: int) -> int:
    """User + system jiffies of `pid`, of the children it has reaped and of its live ones (0
    for one that has just exited). PostgreSQL forks short-lived workers: without the reaped
    ones' time, which moves to the parent when it reaps them, the sum could go down."""
    try:
        mine = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    own = sum(int(ticks) for ticks in mine[11:15])  # utime, stime, cutime, cstime
    return own + sum(process_ticks(int(c)) for c in children)


# wrk sends each request from Lua: every checkout has its own contact, order and key. Each of
# wrk's threads runs its own Lua state with the same random seed, so `setup` numbers them.
SCRIPT = """
local threads, counter, tag, codes = 0, 0, nil, {}
function setup(thread)
  threads = threads + 1
  thread:set("thread", threads)
end
function init(args)
  tag = os.getenv("BENCH_TAG") .. "-" .. thread
  for code in string.gmatch(os.getenv("BENCH_CODES"), "[^,]+") do table.insert(codes, code) end
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
request = function()
  counter = counter + 1
  local id = tag .. "-" .. counter
  wrk.headers["Idempotency-Key"] = id
  local body = string.format(
    '{"code":"%s","customer":{"contact_id":"c-%s","email":"c@example.com"},'
    .. '"cart":{"currency":"EUR","amount":4900},"order_ref":"o-%s"}',
    codes[counter % #codes + 1], id, id)
  return wrk.format(nil, nil, nil, body)
end
"""


def wrk(url: str, seconds: int, connections: int, env: dict[str, str]) -> dict[str, Any]:
    """Run wrk; its requests, seconds, latency percentiles and non-2xx/error count. Its
    Idempotency-Keys are its own: no request repeats one of an earlier call."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(SCRIPT + REPORT)
        script.flush()
        done = subprocess.run(
            [
                "wrk",
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{seconds}s",
                "-s",
                script.name,
                url,
            ],
            env={**os.environ, **env, "BENCH_TAG": uuid.uuid4().hex[:8]},  # keys of this call
            capture_output=True,
            text=True,
            check=True,
        )
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@functools.cache
def openloop_binary() -> Path:
    """bench/openloop, built once per benchmark (Go, with the `go` stripe-mock's install uses)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    binary = Path(tempfile.gettempdir()) / "growthos-bench-openloop"
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=OPENLOOP, check=True)
    return binary


def open_loop(url: str, seconds: int, rate: int, env: dict[str, str]) -> dict[str, Any]:
    """Run bench/openloop: the same requests as wrk's, sent at `rate` a second whatever the
    answers take, each request's latency counted from when it was due."""
    tag = uuid.uuid4().hex[:8]  # keys of this call
    done = subprocess.run(
        [
            str(openloop_binary()),
            f"-url={url}",
            f"-rate={rate}",
            f"-seconds={seconds}",
            f"-tag={tag}",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, Any] = json.loads(done.stdout)
    return found


# Printed by wrk after the run, as one JSON line.
REPORT = """
done = function(summary, latency, requests)
  local errors = summary.errors
  local bad = errors.connect + errors.read + errors.write + errors.timeout + errors.status
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "bad": %d, "p50": %f, "p90": %f, "p99": %f}\\n',
    summary.requests, summary.duration / 1e6, bad,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3))
end
"""


def settle(base_url: str, key: str) -> None:
    """Wait until every projection has applied every event, so a phase does not pay for the
    backlog the previous one left (redemptions answer before the projections have them)."""
    started = time.monotonic()
    auth = {"Authorization": f"Bearer {key}"}
    while sum(
        p["lag"] for p in httpx.get(f"{base_url}/v1/projections", headers=auth).json()["data"]
    ):
        if time.monotonic() - started > 120:
            raise SystemExit("the projections did not catch up within 120 s")
        time.sleep(0.2)
    print(f"  projections caught up in {time.monotonic() - started:.1f} s")


def redemptions(base_url: str, key: str, campaign_ids: str) -> int:
    auth = {"Authorization": f"Bearer {key}"}
    found = [
        httpx.get(f"{base_url}/v1/campaigns/{campaign_id}", headers=auth).json()
        for campaign_id in campaign_ids.split(",")
    ]
    return sum(int(campaign["usage"]["redemptions"]) for campaign in found)


def phase(
    args: argparse.Namespace,
    base_url: str,
    load: Load,
    env: dict[str, str],
    processes: dict[str, int],
) -> Phase:
    """One phase. A redemption phase counts the campaign's redemptions before and after: each
    request answered is one new redemption (a repeated key would be answered without one), plus
    at most one per connection still in flight when wrk stopped."""
    load.run(base_url, 2, env)  # warm-up
    settle(base_url, env["BENCH_KEY"])
    average = " ".join(f"{x:.2f}" for x in os.getloadavg())  # 1, 5, 15 min
    print(f"  {load.label}: {os.cpu_count()} CPUs, load average {average} before the phase")
    redeemed = redemptions(base_url, env["BENCH_KEY"], env["BENCH_CAMPAIGNS"])
    client, before = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_ticks(processes)
    found = load.run(base_url, args.seconds, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    settle(base_url, env["BENCH_KEY"])  # the requests in flight when wrk stopped
    effects = redemptions(base_url, env["BENCH_KEY"], env["BENCH_CAMPAIGNS"]) - redeemed
    ticks = {k: v - before[k] for k, v in cpu_ticks(processes).items()}
    seconds = found["seconds"]
    per_cent = 100 / ((os.cpu_count() or 1) * seconds)  # CPU seconds -> % of the machine
    client_s = after.ru_utime + after.ru_stime - client.ru_utime - client.ru_stime
    cpu = {k: ticks[k] / os.sysconf("SC_CLK_TCK") for k in processes} | {"load": client_s}
    busy = 100 * ticks["busy"] / max(ticks["total"], 1)
    cpu = {k: v * per_cent for k, v in cpu.items()} | {"busy": busy}
    latency = {p: found[f"p{p}"] for p in (50, 90, 99)}
    return Phase(load.label, found["requests"], seconds, latency, found["bad"], effects, cpu)


def loads(args: argparse.Namespace) -> list[Load]:
    found = [
        Load("validations", connections=args.validations_connections),
        Load("redemptions", connections=args.redemptions_connections),
        Load("redemptions", rate=args.redemptions_rate),
    ]
    return [load for load in found if load.connections or load.rate]  # 0 skips a phase


def measure(
    args: argparse.Namespace, base_url: str, key: str, processes: dict[str, int]
) -> list[Phase]:
    auth = {"Authorization": f"Bearer {key}"}
    codes = [CODE] if args.campaigns == 1 else [f"{CODE}-{i}" for i in range(args.campaigns)]
    ids = []
    for code in codes:
        created = httpx.post(
            f"{base_url}/v1/campaigns", json=CAMPAIGN | {"code": code}, headers=auth
        )
        created.raise_for_status()
        ids.append(created.json()["id"])
    env = {"BENCH_KEY": key, "BENCH_CODES": ",".join(codes), "BENCH_CAMPAIGNS": ",".join(ids)}
    for load in loads(args):  # the broker's JIT compiler takes a minute or more to settle
        print(f"warm-up: {load.label} for {args.warm_up} s")
        load.run(base_url, args.warm_up, env)
    results = []
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}")
        for load in loads(args):
            results.append(phase(args, base_url, load, env, processes))
            print("    " + results[-1].line())
    return results


def wait_ready(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"service not ready ({process.poll()=}):\n{log.read_text()[-3000:]}")


async def admin_sql(endpoints: Endpoints, statement: str, drop_topics: str = "") -> None:
    """Run SQL on the server's default database, then delete topics named `drop_topics*`."""
    admin = await asyncpg.connect(endpoints.database_url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()
    if drop_topics:
        kafka = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap_servers)
        await kafka.start()
        try:
            topics = await kafka.list_topics()
            await kafka.delete_topics([t for t in topics if t.startswith(drop_topics)])
        finally:
            await kafka.close()


def bench(args: argparse.Namespace, endpoints: Endpoints, state_dir: Path) -> list[Phase]:
    """One service on a fresh database and topic prefix, both dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    database, prefix = f"bench_{suffix}", f"bench{suffix}."
    with socket.socket() as s:  # a free port for the service
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    asyncio.run(admin_sql(endpoints, f'CREATE DATABASE "{database}"'))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "DATABASE_URL": endpoints.database_url.rsplit("/", 1)[0] + "/" + database,
        "COUPONS_TOPIC_PREFIX": prefix,
        "COUPONS_PORT": str(port),
        "COUPONS_THROTTLE_FAILURES": "100000000",
        "COUPONS_THROTTLE_ADDRESS_FAILURES": "100000000",
        "COUPONS_THROTTLE_KEY_FAILURES": "100000000",
        "COUPONS_LOG_LEVEL": "WARNING",
        "COUPONS_WORKERS": str(args.workers),
    }
    base_url, cli = f"http://127.0.0.1:{port}", [sys.executable, "-m", "services.coupons.cli"]
    process: subprocess.Popen[bytes] | None = None
    log = state_dir / "service.log"
    try:
        with log.open("wb") as out:  # Ctrl-C reaches only us (new session); we stop it below
            process = subprocess.Popen(
                [*cli, "serve"], cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
            )
        wait_ready(process, base_url, log)
        create = [*cli, "keys", "create", "--scope", "admin", "--name", "bench-checkout"]
        made = subprocess.run(create, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        key = made.stdout.strip().splitlines()[-1]
        processes = {"service": process.pid} | stack_processes(state_dir)
        return measure(args, base_url, key, processes)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        drop = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
        asyncio.run(admin_sql(endpoints, drop, drop_topics=prefix))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--validations-connections", type=int, default=16, help="wrk's open connections (0: none)"
    )
    parser.add_argument(
        "--redemptions-connections", type=int, default=64, help="wrk's open connections (0: none)"
    )
    parser.add_argument(
        "--redemptions-rate",
        type=int,
        default=1000,
        help="requests a second of the open-loop redemption phase (0: none)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="COUPONS_WORKERS of the service (default 1, as `make run` serves)",
    )
    parser.add_argument(
        "--campaigns", type=int, default=1, help="campaigns the requests go to, in turn"
    )
    parser.add_argument("--seconds", type=int, default=10, help="each phase's duration")
    parser.add_argument(
        "--warm-up", type=int, default=30, help="seconds of each phase before the first run"
    )
    args = parser.parse_args()
    state_dir = default_state_dir() / "bench"
    state_dir.mkdir(parents=True, exist_ok=True)  # also holds service.log
    with provisioned(
        state_dir, kafka_port=KAFKA_PORT, pg_port=PG_PORT, database="coupons_bench"
    ) as endpoints:
        results = bench(args, endpoints, state_dir)
    print(f"\nmedians over {args.runs} runs, {args.workers} workers, {args.campaigns} campaigns:")
    for load in loads(args):
        mine = [r for r in results if r.name == load.label]
        throughput = statistics.median(r.throughput for r in mine)
        p50 = statistics.median(r.latency_ms[50] for r in mine)
        p99 = statistics.median(r.latency_ms[99] for r in mine)
        print(f"  {load.label:<26} {throughput:6.0f} req/s  p50 {p50:6.1f}  p99 {p99:6.1f} ms")


if __name__ == "__main__":
    main()

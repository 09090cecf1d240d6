"""Checkout throughput and latency: validations and redemptions against a real service.

Provisions Kafka and PostgreSQL (or uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL), serves a
fresh database and topic prefix with one shared-code campaign, and drives it with W keep-alive
clients, each phase after a 10 % warm-up. CPU is % of the whole machine during a phase: the
service, this load generator, and all busy time (the rest is mostly Kafka and PostgreSQL).
"""

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
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
CAMPAIGN = {"name": "Bench", "code": CODE, "discount": DISCOUNT, "limits": {"per_contact": None}}
PHASES = {"validations": 200, "redemptions": 201}  # endpoint under /v1/ -> expected status

Request = tuple[str, dict[str, Any], dict[str, str]]  # path, body, headers
STOPPING = threading.Event()  # set by Ctrl-C


def on_ctrl_c(_signum: int, _frame: object) -> None:
    """Stop sending. (asyncio's own Ctrl-C cancels tasks: that got lost in httpx.) Twice: now."""
    if STOPPING.is_set():
        raise KeyboardInterrupt
    STOPPING.set()


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    latencies_ms: list[float]
    unexpected: Counter[str]  # status (or transport error) -> count
    cpu: dict[str, float]  # % of all CPUs

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]

    def line(self) -> str:
        bad = ", ".join(f"{k}: {v}" for k, v in sorted(self.unexpected.items())) or "none"
        cpu = " ".join(f"{k} {v:.0f}%" for k, v in self.cpu.items())
        return (
            f"{self.name:<11} {self.throughput:6.0f} req/s  p50 {self.percentile(50):6.1f}"
            f"  p95 {self.percentile(95):6.1f}  p99 {self.percentile(99):6.1f} ms"
            f"  unexpected: {bad}  cpu: {cpu}"
        )


def cpu_ticks(pid: int) -> tuple[int, ...]:
    """Jiffies: the process's (user + system), all CPUs' busy, all CPUs' total."""
    mine = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    all_ = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return int(mine[11]) + int(mine[12]), sum(all_) - all_[3] - all_[4], sum(all_)


def requests(name: str, count: int) -> list[Request]:
    """`count` checkouts, each by its own contact and order (and Idempotency-Key to redeem)."""
    tag, cart, batch = uuid.uuid4().hex[:8], {"currency": "EUR", "amount": 4900}, []
    for i in range(count):
        customer = {"contact_id": f"c-{tag}-{i}", "email": f"c{i}@example.com"}
        body = {"code": CODE, "customer": customer, "cart": cart, "order_ref": f"o-{tag}-{i}"}
        headers = {"Idempotency-Key": f"{tag}-{i}"} if name == "redemptions" else {}
        batch.append((f"/v1/{name}", body, headers))
    return batch


async def drive(
    clients: list[httpx.AsyncClient], batch: list[Request], expected: int
) -> tuple[float, list[float], Counter[str]]:
    """Send the batch, one loop per client: (seconds, latencies, unexpected)."""
    latencies: list[float] = []
    unexpected: Counter[str] = Counter()
    pending = (r for r in batch if not STOPPING.is_set())  # shared: each is sent once

    async def worker(http: httpx.AsyncClient) -> None:
        for path, body, headers in pending:
            started = time.perf_counter()
            try:
                outcome = str((await http.post(path, json=body, headers=headers)).status_code)
            except httpx.HTTPError as error:
                outcome = type(error).__name__
            latencies.append((time.perf_counter() - started) * 1000)
            if outcome != str(expected):
                unexpected[outcome] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(http) for http in clients))
    if STOPPING.is_set():
        raise KeyboardInterrupt
    return time.perf_counter() - started, latencies, unexpected


async def phase(clients: list[httpx.AsyncClient], name: str, count: int, pid: int) -> Phase:
    await drive(clients, requests(name, count // 10), PHASES[name])  # warm-up
    batch = requests(name, count)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())  # 1, 5, 15 min
    print(f"  {name}: {os.cpu_count()} CPUs, load average {load} before the phase")
    client, before = time.process_time(), cpu_ticks(pid)
    seconds, latencies, unexpected = await drive(clients, batch, PHASES[name])
    client = time.process_time() - client
    service, busy, total = (b - a for a, b in zip(before, cpu_ticks(pid), strict=True))
    per_cent = 100 / ((os.cpu_count() or 1) * seconds)  # CPU seconds -> % of the machine
    cpu = {"service": service / os.sysconf("SC_CLK_TCK"), "client": client}
    cpu = {k: v * per_cent for k, v in cpu.items()} | {"busy": 100 * busy / max(total, 1)}
    return Phase(name, seconds, latencies, unexpected, cpu)


async def measure(args: argparse.Namespace, base_url: str, key: str, pid: int) -> list[Phase]:
    # A client per worker: one shared httpx pool costs O(connections) CPU per request.
    async with contextlib.AsyncExitStack() as stack:
        auth, one = {"Authorization": f"Bearer {key}"}, httpx.Limits(max_connections=1)
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, headers=auth, timeout=60, limits=one)
            )
            for _ in range(args.workers)
        ]
        (await clients[0].post("/v1/campaigns", json=CAMPAIGN)).raise_for_status()
        results = []
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}")
            for name in PHASES:
                results.append(await phase(clients, name, getattr(args, name), pid))
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


def bench(args: argparse.Namespace, endpoints: Endpoints, log: Path) -> list[Phase]:
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
        "COUPONS_LOG_LEVEL": "WARNING",
    }
    base_url, cli = f"http://127.0.0.1:{port}", [sys.executable, "-m", "services.coupons.cli"]
    process: subprocess.Popen[bytes] | None = None
    try:
        with log.open("wb") as out:  # Ctrl-C reaches only us (new session); we stop it below
            process = subprocess.Popen(
                [*cli, "serve"], cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
            )
        wait_ready(process, base_url, log)
        create = [*cli, "keys", "create", "--scope", "admin", "--name", "bench-checkout"]
        made = subprocess.run(create, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        key = made.stdout.strip().splitlines()[-1]
        signal.signal(signal.SIGINT, on_ctrl_c)
        return asyncio.run(measure(args, base_url, key, process.pid))
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--validations", type=int, default=5000)
    parser.add_argument("--redemptions", type=int, default=3000)
    args = parser.parse_args()
    state_dir = default_state_dir() / "bench"
    state_dir.mkdir(parents=True, exist_ok=True)  # also holds service.log
    with provisioned(
        state_dir, kafka_port=KAFKA_PORT, pg_port=PG_PORT, database="coupons_bench"
    ) as endpoints:
        results = bench(args, endpoints, state_dir / "service.log")
    print(f"\nmedians over {args.runs} runs, {args.workers} workers:")
    for name in PHASES:
        mine = [r for r in results if r.name == name]
        throughput = statistics.median(r.throughput for r in mine)
        p99 = statistics.median(r.percentile(99) for r in mine)
        print(f"  {name:<11} {throughput:6.0f} req/s  p99 {p99:6.1f} ms")


if __name__ == "__main__":
    main()

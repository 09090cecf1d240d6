"""The servers `bench/checkout.py` compares, each started as a process of its own on a free
port: the engine (`coupons serve` on a fresh database and topic prefix), the row-lock peer
(`bench/peer.py` on a fresh database of the same PostgreSQL) and the floor (`bench/floor.py`).
Each is dropped when the benchmark ends."""

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from services.devstack.stack import Endpoints

ROOT = Path(__file__).resolve().parent.parent
CODE = "BENCH-CHECKOUT"
DISCOUNT = {"kind": "amount", "amount_off": 500, "currency": "EUR"}
CAMPAIGN = {"name": "Bench", "discount": DISCOUNT, "limits": {"per_contact": None}}


@dataclass
class Target:
    """A server under test: where to send, the environment of its load generator (key, codes),
    how to wait until it has digested the last phase, and how many redemptions it holds."""

    name: str
    base_url: str
    pid: int
    env: dict[str, str]
    settle: Callable[[], None] = lambda: None
    redemptions: Callable[[], int] = lambda: 0


_FIRST_PORT = int(os.environ.get("BENCH_HTTP_PORT", "0"))
_PORTS = itertools.count(_FIRST_PORT)


def free_port() -> int:
    """The next of BENCH_HTTP_PORT, BENCH_HTTP_PORT + 1, ... when it is set (a port chosen
    below the ephemeral range, so no outgoing connection holds it); else one the kernel picks."""
    if _FIRST_PORT:
        return next(_PORTS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready ({process.poll()=}):\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def started(
    command: list[str], env: dict[str, str], ready_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends; Ctrl-C reaches only us (a new session)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        wait_ready(process, ready_url, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


@contextlib.contextmanager
def fresh_database(endpoints: Endpoints, prefix: str = "") -> Iterator[str]:
    """The URL of a new database, dropped afterwards with the topics named `prefix*`."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_sql(endpoints, f'CREATE DATABASE "{name}"'))
    try:
        yield endpoints.database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        asyncio.run(admin_sql(endpoints, drop, drop_topics=prefix))


def codes(campaigns: int) -> list[str]:
    return [CODE] if campaigns == 1 else [f"{CODE}-{i}" for i in range(campaigns)]


@contextlib.contextmanager
def engine(
    endpoints: Endpoints,
    state_dir: Path,
    workers: int,
    campaigns: int,
    command: tuple[str, ...] = ("-m", "services.coupons.cli", "serve"),
    extra_env: dict[str, str] | None = None,
) -> Iterator[Target]:
    """`coupons serve` (or `command`, run by this Python) on a fresh database and topic
    prefix, with `campaigns` shared-code campaigns."""
    prefix = f"bench{uuid.uuid4().hex[:10]}."
    with fresh_database(endpoints, prefix) as database_url:
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
            "DATABASE_URL": database_url,
            "COUPONS_TOPIC_PREFIX": prefix,
            "COUPONS_PORT": str(port),
            "COUPONS_THROTTLE_FAILURES": "100000000",
            "COUPONS_THROTTLE_ADDRESS_FAILURES": "100000000",
            "COUPONS_THROTTLE_KEY_FAILURES": "100000000",
            "COUPONS_LOG_LEVEL": "WARNING",
            "COUPONS_WORKERS": str(workers),
            **(extra_env or {}),
        }
        base_url = f"http://127.0.0.1:{port}"
        log = state_dir / "service.log"
        with started([sys.executable, *command], env, f"{base_url}/readyz", log) as process:
            create = [sys.executable, "-m", "services.coupons.cli", "keys", "create"]
            made = subprocess.run(
                [*create, "--scope", "admin", "--name", "bench-checkout"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            key = made.stdout.strip().splitlines()[-1]
            auth = {"Authorization": f"Bearer {key}"}
            ids = []
            for code in codes(campaigns):
                body = CAMPAIGN | {"code": code}
                created = httpx.post(f"{base_url}/v1/campaigns", json=body, headers=auth)
                created.raise_for_status()
                ids.append(created.json()["id"])

            def redemptions() -> int:
                found = [
                    httpx.get(f"{base_url}/v1/campaigns/{i}", headers=auth).json() for i in ids
                ]
                return sum(int(campaign["usage"]["redemptions"]) for campaign in found)

            yield Target(
                "engine",
                base_url,
                process.pid,
                {"BENCH_KEY": key, "BENCH_CODES": ",".join(codes(campaigns))},
                settle=lambda: settle(base_url, key),
                redemptions=redemptions,
            )


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


@contextlib.contextmanager
def peer(endpoints: Endpoints, state_dir: Path, campaigns: int) -> Iterator[Target]:
    """`bench/peer.py` on a fresh database of the same PostgreSQL."""
    with fresh_database(endpoints) as database_url:
        port, key = free_port(), uuid.uuid4().hex
        bench = {"BENCH_KEY": key, "BENCH_CODES": ",".join(codes(campaigns))}
        env = {**os.environ, "DATABASE_URL": database_url, **bench}
        command = [sys.executable, "bench/peer.py", f"--port={port}"]
        base_url = f"http://127.0.0.1:{port}"
        with started(command, env, f"{base_url}/docs", state_dir / "peer.log") as process:

            def redemptions() -> int:
                return asyncio.run(_count(database_url))

            yield Target("peer", base_url, process.pid, bench, redemptions=redemptions)


async def _count(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        found: int = await conn.fetchval("SELECT count(*) FROM redemptions")
        return found
    finally:
        await conn.close()


@contextlib.contextmanager
def floor(state_dir: Path) -> Iterator[Target]:
    """`bench/floor.py`: the same HTTP stack answering a fixed body."""
    port = free_port()
    command = [sys.executable, "bench/floor.py", f"--port={port}"]
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ}
    with started(command, env, base_url, state_dir / "floor.log") as process:
        yield Target("floor", base_url, process.pid, {"BENCH_KEY": "-", "BENCH_CODES": CODE})

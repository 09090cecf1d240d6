"""A real coupon service for benchmarks: local Kafka and PostgreSQL (or the configured ones),
a fresh database and topic prefix, `coupons serve` as a process, and an admin key."""

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx

from services.devstack.stack import default_state_dir, provisioned

ROOT = Path(__file__).resolve().parent.parent
KEYS_CREATE = (sys.executable, "-m", "services.coupons.cli", "keys", "create")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _fresh_database(url: str, name: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def serving(name: str, kafka_port: int, pg_port: int) -> Iterator[tuple[httpx.Client, int]]:
    """Yield a client of a ready service, authorised with a new admin key, and the service's
    process id. `name` picks the state directory, so benchmarks can run side by side on their
    own ports."""
    state = default_state_dir() / name
    with provisioned(state, kafka_port=kafka_port, pg_port=pg_port, database="bench") as found:
        tag = uuid.uuid4().hex[:10]
        database = asyncio.run(_fresh_database(found.database_url, f"bench_{tag}"))
        port = _free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": found.kafka_bootstrap_servers,
            "DATABASE_URL": database,
            "COUPONS_TOPIC_PREFIX": f"bench{tag}.",
            "COUPONS_PORT": str(port),
            "COUPONS_LOG_LEVEL": "WARNING",
            "COUPONS_THROTTLE_FAILURES": "100000000",
            "COUPONS_THROTTLE_ADDRESS_FAILURES": "100000000",
            "COUPONS_THROTTLE_KEY_FAILURES": "100000000",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "services.coupons.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        try:
            deadline = time.monotonic() + 90
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the service did not become ready")
                time.sleep(0.2)
            key = subprocess.run(
                [*KEYS_CREATE, "--scope", "admin", "--name", "bench"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
            client.headers["Authorization"] = f"Bearer {key}"
            yield client, process.pid
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=60)

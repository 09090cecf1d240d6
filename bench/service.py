"""A real coupon service for benchmarks: local Kafka and PostgreSQL (or the configured ones),
a fresh database and topic prefix, `coupons serve` as a process (started, awaited and given
an admin key by `services/devstack/service.py`, as the integration tests do)."""

import asyncio
import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from projections.db import Connection
from services.coupons.store.migrate import migrate
from services.devstack.service import create_key, serve, wait_ready
from services.devstack.stack import default_state_dir, provisioned

READY_WITHIN_S = 120.0
"""A loaded machine can take more than the tests' minute to start a service."""
THROTTLE_OFF = {
    "COUPONS_THROTTLE_FAILURES": "100000000",
    "COUPONS_THROTTLE_ADDRESS_FAILURES": "100000000",
    "COUPONS_THROTTLE_KEY_FAILURES": "100000000",
}
Prepare = Callable[[Connection], Awaitable[None]]
"""What a benchmark puts in the fresh, migrated database before the service starts."""


@dataclass(frozen=True)
class Served:
    client: httpx.Client
    """Authorised with `key`."""
    process: subprocess.Popen[bytes]
    base_url: str
    key: str
    """A new admin key's secret."""
    kafka: str
    database_url: str
    """The fresh database."""
    prefix: str
    """`COUPONS_TOPIC_PREFIX`: `contracts.topics.declare(prefix, partitions)` names the
    service's topics."""
    siblings: tuple[subprocess.Popen[bytes], ...] = ()
    """Further `coupons serve` processes on the same database and topics (`serving`'s
    `siblings`)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        """The service's processes: the first, then its siblings."""
        return [self.process.pid, *(sibling.pid for sibling in self.siblings)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _fresh_database(url: str, name: str, prepare: Prepare | None) -> str:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    database_url = url.rsplit("/", 1)[0] + "/" + name
    if prepare is not None:
        conn = await asyncpg.connect(database_url)
        try:
            await migrate(conn)
            await prepare(conn)
        finally:
            await conn.close()
    return database_url


@contextlib.contextmanager
def serving(
    name: str,
    kafka_port: int,
    pg_port: int,
    *,
    env: Mapping[str, str] | None = None,
    prepare: Prepare | None = None,
    log: Path | None = None,
    siblings: Sequence[Mapping[str, str]] = (),
) -> Iterator[Served]:
    """Yield a ready service on a fresh database and topic prefix, with the guessing throttle
    off, logging at WARNING to `log` (default: `<state>/serve-<tag>.log`); `env` adds to or
    overrides its environment. `name` picks the state directory (under the local state
    directory), so benchmarks can run side by side on their own ports. Each of `siblings`
    starts one more process once the first is ready: the first one's environment, this
    over it, a port of its own, its log beside the first one's (`-2`, `-3`, ...)."""
    state = default_state_dir() / name
    with provisioned(state, kafka_port=kafka_port, pg_port=pg_port, database="bench") as found:
        tag = uuid.uuid4().hex[:10]
        database = asyncio.run(_fresh_database(found.database_url, f"bench_{tag}", prepare))
        port, prefix = _free_port(), f"bench{tag}."
        log = log or state / f"serve-{tag}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        first = {
            "KAFKA_BOOTSTRAP_SERVERS": found.kafka_bootstrap_servers,
            "DATABASE_URL": database,
            "COUPONS_TOPIC_PREFIX": prefix,
            "COUPONS_PORT": str(port),
            "COUPONS_LOG_LEVEL": os.environ.get("COUPONS_LOG_LEVEL", "WARNING"),
            **THROTTLE_OFF,
            **(env or {}),
        }
        process = serve(first, log)
        started = [process]
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(process, base_url, log, within_s=READY_WITHIN_S)
            for n, overrides in enumerate(siblings, start=2):
                sibling_port, sibling_log = _free_port(), log.with_stem(f"{log.stem}-{n}")
                sibling = serve(
                    {**first, **overrides, "COUPONS_PORT": str(sibling_port)}, sibling_log
                )
                started.append(sibling)
                wait_ready(sibling, f"http://127.0.0.1:{sibling_port}", sibling_log, READY_WITHIN_S)
            key = create_key(database, "admin", "bench")
            auth = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base_url, timeout=120, headers=auth) as client:
                kafka = found.kafka_bootstrap_servers
                yield Served(
                    client, process, base_url, key, kafka, database, prefix, tuple(started[1:])
                )
        finally:
            for each in started:
                each.terminate()
            for each in started:
                each.wait(timeout=60)

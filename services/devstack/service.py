"""`coupons serve` as a process, the way a person runs it, and API keys made as `coupons keys
create` makes them: for the integration tests and the benchmarks that start the service on a
stack of their own."""

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import asyncpg
import httpx

from services.coupons.store import api_keys
from services.coupons.store.migrate import migrate

READY_WITHIN_S = 60.0


def serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `coupons serve` with this environment (over the current one), logging to `log`."""
    with log.open("w") as out:
        command = [sys.executable, "-m", "services.coupons.cli", "serve"]
        return subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out)


def wait_ready(
    process: subprocess.Popen[bytes],
    base_url: str,
    log: Path,
    within_s: float = READY_WITHIN_S,
) -> None:
    """Return once `/readyz` answers 200; fail with the log's tail if the process ends or is
    not ready within `within_s` (then it is killed: a caller failing here never stops it, and
    a process left behind spins on its stack's broker for as long as the machine runs)."""
    deadline = time.monotonic() + within_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"coupons serve ended: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise TimeoutError(f"not ready in {within_s:g} s: {log.read_text()[-3000:]}")
        time.sleep(0.3)


def create_key(database_url: str, scope: str, name: str) -> str:
    """A new API key, made as `coupons keys create` makes it (`store.api_keys.create` on a
    migrated database), in this process: the command's own process would cost seconds of
    imports per key, and the suite makes hundreds (tests/integration/test_cli.py runs the
    command itself). Runs on a thread of its own, so async callers may call it too."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, _create_key(database_url, scope, name)).result()


async def _create_key(database_url: str, scope: str, name: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        _, secret = await api_keys.create(conn, name, cast(api_keys.Scope, scope))
        return secret
    finally:
        await conn.close()

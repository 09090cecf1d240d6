"""`coupons serve` and `coupons keys create` as processes, the way a person runs them: for the
integration tests and the benchmarks that start the service on a stack of their own."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

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
    not ready within `within_s`."""
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
            raise TimeoutError(f"not ready in {within_s:g} s: {log.read_text()[-3000:]}")
        time.sleep(0.3)


def create_key(database_url: str, scope: str, name: str) -> str:
    """A new API key, made with `coupons keys create`."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.coupons.cli",
            "keys",
            "create",
            "--scope",
            scope,
            "--name",
            name,
        ],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]

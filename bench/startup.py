"""How long `make run` takes to be ready: from the command to `/readyz` answering 200.

    python bench/startup.py [--runs N] [--cold]

Warm: the Python environment, the Kafka jars and the state directory exist (run it once
first). Cold (`--cold`): each run gets an empty jar cache and an empty state directory, so
Kafka's jars are copied from the local Maven repository and storage and PostgreSQL are
initialised anew. Each run is stopped with Ctrl-C (SIGINT), and the script checks that the
local Kafka and PostgreSQL stopped with it. Prints each run and the median.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT, KAFKA_PORT, PG_PORT = 18080, 19192, 15532


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def one_run(env: dict[str, str]) -> float:
    started = time.monotonic()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not ready(f"http://127.0.0.1:{PORT}/readyz"):
            if process.poll() is not None:
                raise SystemExit(f"make run exited with {process.returncode}")
            if time.monotonic() - started > 300:
                raise SystemExit("not ready after 300 s")
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a person would
        process.wait(timeout=60)
    leftovers = [p for p in (PORT, KAFKA_PORT, PG_PORT) if port_open(p)]
    if leftovers:
        raise SystemExit(f"still listening after Ctrl-C: ports {leftovers}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    base = {
        **os.environ,
        "COUPONS_PORT": str(PORT),
        "COUPONS_KAFKA_PORT": str(KAFKA_PORT),
        "COUPONS_PG_PORT": str(PG_PORT),
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
        base.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="coupons-bench-", dir="/var/tmp") as scratch:
        os.chmod(scratch, 0o755)  # the postgres user must reach its data directory
        if not args.cold:
            base["COUPONS_STATE_DIR"] = f"{scratch}/state"
            one_run(base)  # make sure everything is warm
        times = []
        for i in range(args.runs):
            env = dict(base)
            if args.cold:
                env["COUPONS_STATE_DIR"] = f"{scratch}/state-{i}"
                env["COUPONS_CACHE_DIR"] = f"{scratch}/cache-{i}"
            times.append(one_run(env))
            print(f"{'cold' if args.cold else 'warm'} run {i + 1}: ready in {times[-1]:.2f} s")
    kind = "cold" if args.cold else "warm"
    median = statistics.median(times)
    print(f"make run, {kind}: median {median:.2f} s to ready over {args.runs} runs")


if __name__ == "__main__":
    main()

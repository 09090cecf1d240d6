"""The loads of `bench/checkout.py`: wrk's closed loop and `bench/openloop`'s open loop, the
same checkout requests for every server under test, and the CPU each process takes."""

import functools
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
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

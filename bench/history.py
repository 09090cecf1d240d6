"""Start-to-ready and memory against the length of the event log (issue 23, part 2).

    python bench/history.py [--events 1000000 5000000] [--days 365] [--before DIR]
    python bench/history.py --in-process 200000
    python bench/history.py --restore 200000

Seeds a fresh event topic with N events produced directly (a campaign per partition, then
redemptions spread over them, by 100,000 contacts, each with its own idempotency key), by
default all of them within the idempotency memo's 24 h window (the worst case: every key is
live); with `--days D` spread evenly over the D days before the seeding (a realistic history:
with 365, only the last day's keys, about N/365, are in the window, every redemption still in
its campaign's ledger), then
starts the service (`COUPONS_COMPONENTS=decider`: the decider and the campaign view; readiness
ignores the projections, which are not running) and times it from the process's start to
`/readyz` answering 200, and reads its resident memory (VmRSS) once ready:

* `first`: the code on a log it never snapshotted: it folds from offset 0 (and writes a
  snapshot of each partition once loaded);
* `restart`: the code again, once those snapshots are written: it reads them and folds only
  what follows them (nothing here);
* `rebalance (2nd process)`: a second process of the same code joins the first one's group:
  seconds from its start until both answer `/readyz` 200 (the group rebalanced, every
  partition was given up and acquired again, half of them by the newcomer), and its RSS;
* each for this code (`after`) and, with `--before DIR`, a checkout of the code to compare
  with (`before`, run with this environment's interpreter), on the same log, each with a
  database of its own: both first starts, then `--rounds` rounds of a restart and a
  rebalance of each code in turn, alternated.

Memory per million redemptions is (RSS with N events - RSS with none) / N * 1e6, each
process holding its decider's state and its view. `--in-process N` measures only a decider's
partition state, in this process, with tracemalloc: N redemptions folded (copy this file into
another checkout to measure that one). `--restore N`: such a state through its snapshot
codec, encoded and read back, CPU seconds. It provisions its own Kafka and PostgreSQL
on `COUPONS_KAFKA_PORT` / `COUPONS_PG_PORT` (19392 / 15632 by default; the service on
`COUPONS_BENCH_PORT`, 18380, and the one after it) in `COUPONS_STATE_DIR`
(a temporary directory by default), the services' log in `COUPONS_BENCH_LOG` if set.
`--seed-only` seeds the logs and prints their topic prefixes; `--seeded PREFIX --events N`
then measures that log (the broker's state kept in `COUPONS_STATE_DIR`): a long seeding
need not wait for the code it measures. A first start prints its database's name; with
`--snapshotted NAME` as well, only the restarts and rebalances are measured again, on the
snapshots that first start wrote (`--rounds` of them): a long first start need not be
repeated to measure its restart on a quieter machine. Too long for `make bench` (minutes per
million events); figures in docs/performance/resilience.md.
"""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from history_events import (  # noqa: E402
    CONTACTS,
    PARTITIONS,
    campaigns,
    defined,
    fold_memory,
    occurred,
    redemption_template,
    restore_cost,
)

from contracts.topics import declare  # noqa: E402
from services.coupons.bus import kafka  # noqa: E402
from services.coupons.bus.topics import ensure_topics  # noqa: E402
from services.devstack.stack import provisioned  # noqa: E402

SNAPSHOT_EVERY = 100_000  # the default: a partition of a million-event log has more
PORT = int(os.environ.get("COUPONS_BENCH_PORT", "18380"))
LIMIT_S = 6 * 3600  # a first start of twenty million events on a loaded machine: hours


async def seed(bootstrap: str, prefix: str, count: int, days: float) -> float:
    """Produce `count` events (a definition per partition, then redemptions over the last
    `days`, or now); seconds taken."""
    topics = declare(prefix, PARTITIONS)
    await ensure_topics(bootstrap, topics, 1)
    started = time.monotonic()
    owners = campaigns()
    end = datetime.now(UTC)
    producer = kafka.producer(bootstrap)
    await producer.start()
    try:
        for p, campaign_id in owners.items():
            first = end - timedelta(days=days)
            await producer.send_and_wait(
                topics.events.name, defined(campaign_id, first), partition=p
            )
        templates = {p: redemption_template(c) for p, c in owners.items()}
        pending = []
        for n in range(count - PARTITIONS):
            p = n % PARTITIONS
            at = occurred(n, count, days, end)
            value = templates[p].format(n=n, contact=n % CONTACTS, uid=uuid.UUID(int=n + 1), at=at)
            pending.append(await producer.send(topics.events.name, value.encode(), partition=p))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


def ready(port: int = PORT) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory now (`VmRSS`), or at its highest (`VmHWM`), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


class Service:
    def __init__(self, tree: Path, env: dict[str, str], log: Path, port: int = PORT) -> None:
        self.started = time.monotonic()
        self.port = port
        with log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.coupons.cli", "serve"],
                cwd=tree,
                env={**env, "PYTHONPATH": str(tree), "COUPONS_PORT": str(port)},
                stdout=out,
                stderr=out,
            )

    def until_ready(self, limit_s: float = LIMIT_S) -> float:
        while not ready(self.port):
            if self.process.poll() is not None:
                raise SystemExit(f"the service exited with {self.process.returncode}")
            if time.monotonic() - self.started > limit_s:
                raise SystemExit(f"not ready after {limit_s} s")
            time.sleep(0.1)
        return time.monotonic() - self.started

    def ready_again(self, other: "Service", limit_s: float = LIMIT_S) -> float:
        """Seconds from the start of `other` (a second process joining the group) until both
        serve: the group rebalanced and each folded what it was given."""
        other.until_ready(limit_s)  # it joined, so the group rebalanced: now the first one
        self.started = other.started
        return self.until_ready(limit_s)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def snapshotted(database_url: str, prefix: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        found: int = await conn.fetchval(
            "SELECT count(DISTINCT partition) FROM state_snapshots WHERE topic = $1",
            declare(prefix, PARTITIONS).events.name,
        )
        return found
    finally:
        await conn.close()


async def fresh_database(admin_url: str) -> str:
    """A new database's name, on the server of `admin_url`."""
    name = f"history_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


def on_database(env: dict[str, str], name: str, prefix: str) -> dict[str, str]:
    """`env` for the service on database `name` (of the same server) and `prefix`'s log."""
    database_url = env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + name
    return {**env, "DATABASE_URL": database_url, "COUPONS_TOPIC_PREFIX": prefix}


def runs(before: Path | None) -> Iterator[tuple[str, Path]]:
    if before is not None:
        yield "before", before
    yield "after", ROOT


def first_start(
    label: str, tree: Path, env: dict[str, str], prefix: str, count: int, log: Path
) -> tuple[dict[str, str], str, str]:
    """Start the service on `prefix`'s log with a database of its own, until its snapshots are
    written; its environment (for the restarts), its row and its highest RSS meanwhile."""
    name = asyncio.run(fresh_database(env["DATABASE_URL"]))
    print(f"# {label}, first start's database: {name}", flush=True)
    env = on_database(env, name, prefix)
    service = Service(tree, env, log)
    try:
        seconds = service.until_ready()
        row = f"{label}, first\t{seconds:.1f}\t{rss_mib(service.process.pid):.0f}"
        if count // PARTITIONS >= SNAPSHOT_EVERY:
            while asyncio.run(snapshotted(env["DATABASE_URL"], prefix)) < PARTITIONS:
                time.sleep(1)  # the snapshots written after loading, then a restart
        peak = (
            f"# {label}, first start's highest RSS {rss_mib(service.process.pid, 'VmHWM'):.0f} MiB"
        )
    finally:
        service.stop()
    return env, row, peak


def restarted(label: str, tree: Path, env: dict[str, str], log: Path) -> list[str]:
    """Start the service again (from its snapshots), then a second process beside it (a
    rebalance: how long until both serve)."""
    rows = []
    service = Service(tree, env, log)
    try:
        seconds = service.until_ready()
        rows.append(f"{label}, restart\t{seconds:.1f}\t{rss_mib(service.process.pid):.0f}")
        joining = Service(tree, env, log, PORT + 1)
        try:
            seconds = service.ready_again(joining)
            rss = rss_mib(joining.process.pid)
            rows.append(f"{label}, rebalance (2nd process)\t{seconds:.1f}\t{rss:.0f}")
        finally:
            joining.stop()
    finally:
        service.stop()
    return rows


def measure(
    trees: list[tuple[str, Path]],
    env: dict[str, str],
    prefix: str,
    count: int,
    log: Path,
    rounds: int,
    snapshotted: str | None = None,
) -> Iterator[str]:
    """Each code's first start on `prefix`'s log (none with `snapshotted`, the database of
    one run before), then `rounds` rounds of a restart and a rebalance of each code in turn
    (alternated: the machine's load changes by the minute)."""
    envs = {}
    for label, tree in trees:
        if snapshotted is not None:
            envs[label] = on_database(env, snapshotted, prefix)
            continue
        envs[label], row, peak = first_start(label, tree, env, prefix, count, log)
        yield row
        yield peak
    for _ in range(rounds):
        for label, tree in trees:
            yield f"# load average {os.getloadavg()[0]:.1f}"
            yield from restarted(label, tree, envs[label], log)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument(
        "--days",
        type=float,
        default=0,
        help="spread the redemptions over this many days (default: all within the memo's window)",
    )
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument(
        "--rounds", type=int, default=1, help="restarts and rebalances of each code, alternated"
    )
    parser.add_argument(
        "--seed-only", action="store_true", help="seed the logs, print their prefixes, stop"
    )
    parser.add_argument(
        "--seeded",
        metavar="PREFIX",
        help="measure the log seeded before under this prefix (one --events: its count)",
    )
    parser.add_argument(
        "--snapshotted",
        metavar="DATABASE",
        help="with --seeded: restarts only, on the snapshots of this first start's database",
    )
    parser.add_argument(
        "--in-process", type=int, metavar="N", help="only: a decider's bytes per redemption"
    )
    parser.add_argument(
        "--restore", type=int, metavar="N", help="only: a state's snapshot codec, in process"
    )
    args = parser.parse_args()
    if args.restore:
        restore_cost(args.restore)
        return
    if args.in_process:
        fold_memory(args.in_process)
        return
    kafka_port = int(os.environ.get("COUPONS_KAFKA_PORT", "19392"))
    pg_port = int(os.environ.get("COUPONS_PG_PORT", "15632"))
    with tempfile.TemporaryDirectory(prefix="coupons-history-", dir="/var/tmp") as scratch:
        os.chmod(scratch, 0o755)  # the postgres user must reach its data directory
        state = Path(os.environ.get("COUPONS_STATE_DIR") or f"{scratch}/state")
        log = Path(os.environ.get("COUPONS_BENCH_LOG") or f"{scratch}/service.log")
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}  # fmt: skip
        with provisioned(state, kafka_port=kafka_port, pg_port=pg_port, env=clean) as ends:
            env = {
                **clean,
                "KAFKA_BOOTSTRAP_SERVERS": ends.kafka_bootstrap_servers,
                "DATABASE_URL": ends.database_url,
                "COUPONS_PORT": str(PORT),
                "COUPONS_PARTITIONS": str(PARTITIONS),
                "COUPONS_COMPONENTS": "decider",
                "COUPONS_READY_MAX_LAG": str(10**15),
                "COUPONS_LOG_LEVEL": "WARNING",
                "COUPONS_SNAPSHOT_EVERY": str(SNAPSHOT_EVERY),
            }
            print(f"load average before: {os.getloadavg()}")
            print("events\trun\tready s\tRSS MiB")
            empty: dict[str, float] = {}
            counts = (
                args.events if args.seed_only or args.snapshotted else [PARTITIONS, *args.events]
            )
            for count in counts:
                if args.seeded and count != PARTITIONS:
                    prefix = args.seeded
                else:
                    prefix = f"h{uuid.uuid4().hex[:6]}."
                    took = asyncio.run(seed(ends.kafka_bootstrap_servers, prefix, count, args.days))
                    over = f"over {args.days:g} days" if args.days else "all within the window"
                    print(f"# seeded {count:,} events ({over}) in {took:.0f} s as {prefix}",
                          flush=True)  # fmt: skip
                if args.seed_only:
                    continue
                trees = list(runs(args.before))
                rows = measure(trees, env, prefix, count, log, args.rounds, args.snapshotted)
                for row in rows:
                    if row.startswith("#"):
                        print(row, flush=True)
                        continue
                    print(f"{count:,}\t{row}", flush=True)
                    rss = float(row.split("\t")[-1])
                    run = row.split("\t")[0]
                    if count == PARTITIONS:
                        empty[run] = rss
                    elif run in empty:
                        per_million = (rss - empty[run]) / (count - PARTITIONS) * 1e6
                        print(f"#   {run}: {per_million:,.0f} MiB per million redemptions")
            print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

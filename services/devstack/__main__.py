"""`python -m services.devstack up|down|status`: a local Kafka + PostgreSQL for development.

`up` stays in the foreground until Ctrl-C (or SIGTERM, which is what `down` sends it), then
stops what it started. `down` also stops servers orphaned by a killed `up`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path

from .kafka import stop_leftover_kafka
from .postgres import LocalPostgres, stop_leftover_postgres
from .process import cmdline, pid_alive, read_pid_file
from .stack import (
    DEFAULT_DATABASE,
    DEFAULT_KAFKA_PORT,
    DEFAULT_PG_PORT,
    ENDPOINTS_FILE,
    StackBusy,
    default_state_dir,
    provisioned,
)


def up(args: argparse.Namespace) -> int:
    with provisioned(
        args.state_dir, kafka_port=args.kafka_port, pg_port=args.pg_port, database=args.database
    ) as endpoints:
        print(f"KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap_servers}")
        print(f"DATABASE_URL={endpoints.database_url}")
        print(f"state: {args.state_dir}   (Ctrl-C or `down` to stop)", flush=True)
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            print("stopping...", flush=True)
    return 0


def down(args: argparse.Namespace, timeout: float = 60.0) -> int:
    state_dir: Path = args.state_dir
    if not state_dir.exists():
        print(f"nothing to stop: {state_dir} does not exist")
        return 0
    with (state_dir / "stack.lock").open("a+") as lock:
        deadline = time.monotonic() + timeout
        owner = None
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if owner is None:
                    lock.seek(0)
                    owner = int(lock.read().strip() or 0)
                    if owner:
                        print(f"asking the stack owner (pid {owner}) to stop...")
                        os.kill(owner, signal.SIGTERM)
                if time.monotonic() > deadline:
                    print(f"pid {owner} still holds {state_dir}/stack.lock", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        stop_leftover_kafka(state_dir)  # orphans of a killed owner, if any
        stop_leftover_postgres(state_dir)
    print("stopped")
    return 0


def status(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    owner = None
    if (state_dir / "stack.lock").exists():
        with (state_dir / "stack.lock").open() as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = lock.read().strip()
    print(f"state dir: {state_dir}")
    print(f"owner:     {f'pid {owner}' if owner else 'none'}")
    broker = read_pid_file(state_dir / "kafka" / "broker.pid")
    alive = broker is not None and pid_alive(broker) and "kafka.Kafka" in cmdline(broker)
    print(f"kafka:     {f'running (pid {broker})' if alive else 'stopped'}")
    pg = LocalPostgres(state_dir, port=0, database="postgres")
    print(f"postgres:  {'running' if pg.is_running() else 'stopped'}")
    if owner and (state_dir / ENDPOINTS_FILE).exists():
        for key, value in json.loads((state_dir / ENDPOINTS_FILE).read_text()).items():
            print(f"{key.upper()}={value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    parser.add_argument("--kafka-port", type=int, default=DEFAULT_KAFKA_PORT)
    parser.add_argument("--pg-port", type=int, default=DEFAULT_PG_PORT)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args(argv)
    command = {"up": up, "down": down, "status": status}[args.command]
    try:
        return command(args)
    except StackBusy as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while starting: what was started is stopped already
        return 130


if __name__ == "__main__":
    sys.exit(main())

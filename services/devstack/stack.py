"""Provision Kafka + PostgreSQL for local runs and tests, unless the environment points elsewhere.

One state directory holds one stack. The process inside `provisioned()` holds an exclusive
flock on `<state_dir>/stack.lock` (the kernel drops it when that process dies, even on kill -9),
so a second stack on the same directory fails fast, while a broker or postmaster orphaned by a
killed run is found through its pid file and *stopped* (not reused) before starting afresh:
restarting costs ~2 s and guarantees the ports and settings asked for now.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Protocol

import structlog

from .jars import default_cache_dir
from .kafka import LocalKafka
from .postgres import LocalPostgres

log = structlog.get_logger(__name__)

DEFAULT_KAFKA_PORT = 19092
DEFAULT_PG_PORT = 15432
DEFAULT_DATABASE = "coupons"
ENDPOINTS_FILE = "endpoints.json"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap_servers: str
    database_url: str


class StackBusy(RuntimeError):
    """Another live process already runs a stack in this state directory."""


class _Service(Protocol):
    def start(self) -> None: ...
    def cancel(self) -> None: ...
    def stop(self) -> None: ...


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """`$COUPONS_STATE_DIR`; else /var/lib/growthos-coupons for root (the postgres user must
    reach it, and /root is private), else `${XDG_STATE_HOME:-~/.local/state}/growthos-coupons`."""
    if env.get("COUPONS_STATE_DIR"):
        return Path(env["COUPONS_STATE_DIR"]).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/growthos-coupons")
    xdg = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "growthos-coupons"


@contextlib.contextmanager
def provisioned(
    state_dir: Path,
    *,
    kafka_port: int = DEFAULT_KAFKA_PORT,
    pg_port: int = DEFAULT_PG_PORT,
    database: str = DEFAULT_DATABASE,
    env: Mapping[str, str] = os.environ,
    fresh_kafka: bool = False,
) -> Iterator[Endpoints]:
    """Yield endpoints, starting (in parallel) whatever `KAFKA_BOOTSTRAP_SERVERS` /
    `DATABASE_URL` in `env` do not already provide, and stopping it again on exit
    (including Ctrl-C and SIGTERM). `fresh_kafka`: a broker started here starts on empty
    storage."""
    kafka_url, db_url = env.get("KAFKA_BOOTSTRAP_SERVERS"), env.get("DATABASE_URL")
    services: list[_Service] = []
    if not kafka_url:
        kafka = LocalKafka(
            state_dir, port=kafka_port, cache_dir=default_cache_dir(env), fresh=fresh_kafka
        )
        kafka_url = kafka.bootstrap_servers
        services.append(kafka)
    if not db_url:
        postgres = LocalPostgres(state_dir, port=pg_port, database=database)
        db_url = postgres.database_url
        services.append(postgres)
    endpoints = Endpoints(kafka_bootstrap_servers=kafka_url, database_url=db_url)
    if not services:
        yield endpoints
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        state_dir.chmod(0o755)  # the postgres user must be able to traverse it
    with _locked(state_dir), _sigterm_raises_systemexit():
        started = time.monotonic()
        try:
            _start_all(services)
            log.info(
                "stack ready", seconds=round(time.monotonic() - started, 1), **asdict(endpoints)
            )
            (state_dir / ENDPOINTS_FILE).write_text(json.dumps(asdict(endpoints)) + "\n")
            yield endpoints
        finally:
            (state_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
            _stop_all(services)


def _start_all(services: list[_Service]) -> None:
    with ThreadPoolExecutor(len(services), thread_name_prefix="devstack") as pool:
        futures = [pool.submit(service.start) for service in services]
        try:
            for future in as_completed(futures):  # the first failure cancels the others
                future.result()
        except BaseException:
            for service in services:
                service.cancel()
            raise  # leaving the pool waits for the other start() to give up


def _stop_all(services: list[_Service]) -> None:
    def stop(service: _Service) -> None:
        try:
            service.stop()
        except Exception:
            log.exception("failed to stop service", service=type(service).__name__)

    with ThreadPoolExecutor(len(services), thread_name_prefix="devstack-stop") as pool:
        list(pool.map(stop, services))


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    with (state_dir / "stack.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackBusy(
                f"{state_dir} is in use by pid {_lock_owner(lock)}: stop it with "
                f"`python -m services.devstack down --state-dir {state_dir}`"
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


def _lock_owner(lock: IO[str]) -> str:
    lock.seek(0)
    return lock.read().strip() or "?"


@contextlib.contextmanager
def _sigterm_raises_systemexit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the services. Only when nobody
    else handles SIGTERM (e.g. uvicorn installs its own graceful-shutdown handler)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not abort cleanup
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

"""The faults `make chaos` injects (`bench/chaos.py`), each returning when it has ended
(the process restarted, the dependency back, the disk freed), and what they act on."""

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from webhook_load import WebhookLoad

from services.coupons.settings import Settings
from services.devstack.fleet import Fleet
from services.devstack.kafka import LocalKafka
from services.devstack.outages import CheckoutLoad
from services.devstack.postgres import LocalPostgres
from services.devstack.process import pid_alive


@dataclass
class Rig:
    fleet: Fleet
    broker: LocalKafka
    database: LocalPostgres
    settings: Settings
    checkouts: list[CheckoutLoad]
    probes: CheckoutLoad
    """One redemption sent after each fault, retried until answered: a new contact of the
    per-contact campaign each time."""
    webhooks: WebhookLoad
    disk: Path
    down_s: float


def broker_pid(broker: LocalKafka) -> int:
    return int((broker.dir / "broker.pid").read_text().split()[0])


async def kill_process(rig: Rig, name: str) -> float:
    rig.fleet.kill(name)
    rig.fleet.start(name)  # a supervisor's restart (systemd's Restart=always)
    return time.monotonic()


async def kill_twice(rig: Rig, name: str) -> float:
    """Killed again 3 s after its restart: while it joins its group and folds its log."""
    await kill_process(rig, name)
    await asyncio.sleep(3)
    return await kill_process(rig, name)


async def kill_every_process(rig: Rig) -> float:
    for name in rig.fleet.members:
        rig.fleet.kill(name)
    for name in rig.fleet.members:
        rig.fleet.start(name)
    return time.monotonic()


async def kill_kafka(rig: Rig) -> float:
    os.kill(broker_pid(rig.broker), signal.SIGKILL)
    await asyncio.to_thread(rig.broker.stop)  # reaps it
    await asyncio.sleep(rig.down_s)
    await asyncio.to_thread(rig.broker.start)
    return time.monotonic()


async def crash_postgres(rig: Rig) -> float:
    await asyncio.to_thread(rig.database.stop, "immediate")
    await asyncio.sleep(rig.down_s)
    await asyncio.to_thread(rig.database.start)
    return time.monotonic()


async def fill_kafka_disk(rig: Rig) -> float:
    """Take every free byte of the broker's tmpfs, 1 MiB at a time (one allocation of all of
    it fails whole when the broker writes meanwhile), for `down_s`; then free it, and start
    the broker again if it stopped on the failed log directory."""
    filler = rig.disk / "chaos-filler"
    chunk = 1 << 20
    with filler.open("wb") as out:
        size = 0
        while True:
            try:
                os.posix_fallocate(out.fileno(), size, chunk)
            except OSError:
                if chunk == 4096:
                    break
                chunk //= 2
                continue
            size += chunk
    free = os.statvfs(rig.disk)
    print(f"  filled {size >> 20} MiB; {free.f_bavail * free.f_frsize} bytes left", flush=True)
    await asyncio.sleep(rig.down_s)
    filler.unlink()
    freed = time.monotonic()
    if pid_alive(broker_pid(rig.broker)):
        print("  the broker stayed up", flush=True)
    else:  # it stops when its only log directory fails
        print("  the broker had stopped: a supervisor starts it again", flush=True)
        await asyncio.to_thread(rig.broker.stop)
        await asyncio.to_thread(rig.broker.start)
    return freed


async def kill_processes_while_kafka_is_down(rig: Rig) -> float:
    """The decider and the translator killed and restarted while the broker is down: they
    start without it, and must come back when it does."""
    os.kill(broker_pid(rig.broker), signal.SIGKILL)
    await asyncio.to_thread(rig.broker.stop)
    await asyncio.sleep(rig.down_s / 2)
    for name in ("decider", "stripe"):
        await kill_process(rig, name)
    await asyncio.sleep(rig.down_s / 2)
    await asyncio.to_thread(rig.broker.start)
    return time.monotonic()


async def kill_projector_while_postgres_is_down(rig: Rig) -> float:
    await asyncio.to_thread(rig.database.stop, "immediate")
    await asyncio.sleep(rig.down_s / 2)
    await kill_process(rig, "projector")
    await asyncio.sleep(rig.down_s / 2)
    await asyncio.to_thread(rig.database.start)
    return time.monotonic()


FAULTS: list[tuple[str, Callable[[Rig], Awaitable[float]]]] = [
    ("decider process SIGKILL", lambda rig: kill_process(rig, "decider")),
    ("projector process SIGKILL", lambda rig: kill_process(rig, "projector")),
    ("Stripe translator process SIGKILL", lambda rig: kill_process(rig, "stripe")),
    ("API and campaign view process SIGKILL", lambda rig: kill_process(rig, "api")),
    ("decider SIGKILL again 3 s after its restart", lambda rig: kill_twice(rig, "decider")),
    ("every process SIGKILL at once", kill_every_process),
    ("Kafka SIGKILL, restarted", kill_kafka),
    ("PostgreSQL crash (immediate), restarted", crash_postgres),
    ("Kafka log dir full (ENOSPC)", fill_kafka_disk),
    ("decider and translator SIGKILL while Kafka is down", kill_processes_while_kafka_is_down),
    ("projector SIGKILL while PostgreSQL is down", kill_projector_while_postgres_is_down),
]


def mount_disk(path: Path, mib: int) -> None:
    """Kafka's log directory on a tmpfs of `mib`: a disk budget that can really fill."""
    if os.path.ismount(path):
        subprocess.run(["umount", path], check=True)
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", path], check=True)

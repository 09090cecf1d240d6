"""Several `coupons serve` processes on one stack, each named and running the components it is
given (`COUPONS_COMPONENTS`), so that each can be killed with SIGKILL and started again on its
own: the decider alone, the projector alone, three full replicas. Used by `make chaos`
(`bench/chaos.py`), `bench/replicas.py` and `tests/integration/test_replicas.py`."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.devstack.process import tail


@dataclass
class Member:
    name: str
    components: str
    """`COUPONS_COMPONENTS` of this process ("" for the API and campaign view alone)."""
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Fleet:
    """The processes of one deployment: `env` holds what they share (the broker, the database,
    the topic prefix, the partitions); each member adds its port and components."""

    env: dict[str, str]
    members: dict[str, Member] = field(default_factory=dict)

    def add(self, name: str, components: str, port: int, log_dir: Path) -> Member:
        self.members[name] = Member(name, components, port, log_dir / f"{name}.log")
        return self.members[name]

    def start(self, name: str) -> None:
        """Start the member (appending to its log): a process supervisor's restart."""
        member = self.members[name]
        env = {
            **os.environ,
            **self.env,
            "COUPONS_PORT": str(member.port),
            "COUPONS_COMPONENTS": member.components,
        }
        with member.log.open("a") as out:
            member.process = subprocess.Popen(
                [sys.executable, "-m", "services.coupons.cli", "serve"],
                env=env,
                stdout=out,
                stderr=out,
            )
        member.starts += 1

    def kill(self, name: str) -> None:
        """SIGKILL, and reap it."""
        process = self.members[name].process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)

    def alive(self, name: str) -> bool:
        process = self.members[name].process
        return process is not None and process.poll() is None

    def stop_all(self, timeout_s: float = 30) -> None:
        """SIGTERM every member (a graceful shutdown), then SIGKILL what is left."""
        running = [m.process for m in self.members.values() if m.process is not None]
        for process in running:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout_s
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    async def ready(self, names: list[str] | None = None, timeout_s: float = 120) -> float:
        """Wait until every member named (all by default) answers `/readyz` 200; the seconds
        it took. A member that exits meanwhile is an error (with its log's end)."""
        started = time.monotonic()
        waiting = list(names or self.members)
        async with httpx.AsyncClient(timeout=5) as http:
            while waiting:
                for name in list(waiting):
                    member = self.members[name]
                    if not self.alive(name):
                        raise RuntimeError(f"{name} exited:\n{tail(member.log)}")
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{member.base_url}/readyz")).status_code == 200:
                            waiting.remove(name)
                if time.monotonic() - started > timeout_s:
                    raise TimeoutError(f"not ready in {timeout_s:g} s: {waiting}")
                if waiting:
                    await asyncio.sleep(0.2)
        return time.monotonic() - started

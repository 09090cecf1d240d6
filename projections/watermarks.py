"""How far each projection has got, per partition, for read-your-writes and readiness.

Listens on `projection_progress` (sent by the runner inside its transaction, so a
notification means the rows are committed) and falls back to reading `projection_offsets`
when a wait outlasts a notification that may have been missed.
"""

import asyncio
from collections import defaultdict

import asyncpg
import structlog

from projections.db import Connection
from projections.offsets import stored_offsets
from projections.runner import PROGRESS_CHANNEL

log = structlog.get_logger(__name__)

RECHECK_S = 0.25


class ProjectionNotCaughtUp(TimeoutError):
    pass


class Watermarks:
    def __init__(self, database_url: str, topic: str, pool: asyncpg.Pool) -> None:
        self._database_url = database_url
        self._pool = pool
        self._topic = topic
        self._next: dict[str, dict[int, int]] = defaultdict(dict)
        self._changed = asyncio.Condition()
        self.awaited = asyncio.Event()
        """Set while a read waits here: the projection runner polls at once instead of
        lingering (`ProjectionRunner`)."""
        self._conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self._database_url)
        await self._conn.add_listener(PROGRESS_CHANNEL, self._on_notify)
        async with self._pool.acquire() as conn:
            names = await conn.fetch("SELECT DISTINCT projection FROM projection_offsets")
        for row in names:
            await self._reload(row["projection"])

    async def stop(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    def _on_notify(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        name, partition, offset = payload.rsplit(":", 2)
        self._advance(name, int(partition), int(offset))

    def _advance(self, name: str, partition: int, next_offset: int) -> None:
        known = self._next[name]
        if next_offset > known.get(partition, -1):
            known[partition] = next_offset
            asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _reload(self, name: str) -> None:
        async with self._pool.acquire() as conn:
            stored = await stored_offsets(conn, name, self._topic)
        for partition, offset in stored.items():
            self._advance(name, partition, offset)

    def reached(self, name: str, partition: int, offset: int) -> bool:
        return self._next[name].get(partition, 0) > offset

    async def wait(self, name: str, partition: int, offset: int, timeout_s: float) -> None:
        """Return once projection `name` has applied the event at (partition, offset)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.reached(name, partition, offset):
            self.awaited.set()
            left = deadline - loop.time()
            if left <= 0:
                raise ProjectionNotCaughtUp(f"{name} has not reached {partition}:{offset}")
            try:
                async with self._changed:
                    await asyncio.wait_for(self._changed.wait(), min(left, RECHECK_S))
            except TimeoutError:
                await self._reload(name)

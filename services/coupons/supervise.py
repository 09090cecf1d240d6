"""Keep a background component running: a crash is logged with its traceback and the
component restarts from its durable state (Kafka offsets, PostgreSQL), with backoff.
`healthy` is false from a crash until the restarted component has run for a while."""

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

STABLE_AFTER_S = 10.0


class Supervised:
    def __init__(
        self, name: str, run: Callable[[], Awaitable[None]], max_backoff_s: float = 30
    ) -> None:
        self.name = name
        self._run = run
        self._max_backoff_s = max_backoff_s
        self._last_crash: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def healthy(self) -> bool:
        if self._task is None or self._task.done():
            return False
        return self._last_crash is None or time.monotonic() - self._last_crash > STABLE_AFTER_S

    async def _forever(self) -> None:
        backoff = 0.5
        while True:
            started = time.monotonic()
            try:
                await self._run()
                log.warning("component.returned", component=self.name)
            except Exception:
                log.exception("component.crashed", component=self.name, restart_in_s=backoff)
            self._last_crash = time.monotonic()
            if self._last_crash - started > STABLE_AFTER_S:
                backoff = 0.5
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

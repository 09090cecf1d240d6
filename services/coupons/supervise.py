"""Keep a background component running: every exit but a stop is logged with its cause and the
component restarts from its durable state (Kafka transactions, PostgreSQL offsets), with a
backoff capped at a few seconds, so that it resumes within seconds of a dependency's return
however long the outage was. `healthy` is false from a crash until the restarted component
has run for a while; `problem` says what it last failed on."""

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

STABLE_AFTER_S = 3.0
"""How long a restarted component must run before it counts as healthy again."""
MAX_BACKOFF_S = 4.0
STOP_TIMEOUT_S = 5.0
"""How long a stop waits for the component's own cleanup (closing Kafka clients, which can
hang while the broker is away) before it gives up on it."""


class Supervised:
    def __init__(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.name = name
        self._run = run
        self._max_backoff_s = max_backoff_s
        self._last_crash: float | None = None
        self._running_since: float | None = None  # None while it waits to restart
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.problem: str | None = None
        """What the component last failed on (`KafkaConnectionError: ...`), until it has run
        `STABLE_AFTER_S` without failing."""

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._forever(), name=self.name)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping = True
        self._task.cancel()
        done, _ = await asyncio.wait({self._task}, timeout=STOP_TIMEOUT_S)
        if not done:
            log.warning("component.stop_timed_out", component=self.name, after_s=STOP_TIMEOUT_S)

    @property
    def healthy(self) -> bool:
        if self._task is None or self._task.done():
            return False
        running = self._running_since
        stable = self._last_crash is None or (
            running is not None and time.monotonic() - running > STABLE_AFTER_S
        )
        if stable:
            self.problem = None
        return stable

    async def _forever(self) -> None:
        backoff = 0.5
        while True:
            started = self._running_since = time.monotonic()
            try:
                await self._run()
                self.problem = "returned"
                log.warning("component.returned", component=self.name)
            except asyncio.CancelledError:
                if self._stopping:
                    raise
                # a cancellation nobody asked for (a library cancelling its own task on a lost
                # connection): the component died all the same, so it restarts
                self.problem = "cancelled"
                log.error("component.cancelled", component=self.name, restart_in_s=backoff)
            except Exception as error:
                self.problem = f"{type(error).__name__}: {error}"[:300]
                log.exception("component.crashed", component=self.name, restart_in_s=backoff)
            self._last_crash, self._running_since = time.monotonic(), None
            if self._last_crash - started > STABLE_AFTER_S:
                backoff = 0.5
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

"""A loop that works in batches and otherwise sleeps until its next due moment, woken early
by a PostgreSQL `NOTIFY` on its channel: the contacts' timer loop, the segment outbox relay
and the automations' sender."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg


async def run_woken(
    database_url: str,
    channel: str,
    step: Callable[[], Awaitable[bool]],
    seconds_to_next: Callable[[], Awaitable[float]],
) -> None:
    """Forever: `step()` (True: more is due at once, step again), else sleep
    `seconds_to_next()` or until a notification on `channel`. A notification that arrives
    while a step runs is not lost: the step after it runs at once."""
    woken = asyncio.Event()
    listener = await asyncpg.connect(database_url)
    await listener.add_listener(channel, lambda *_: woken.set())
    try:
        while True:
            woken.clear()
            if await step():
                continue
            wait = await seconds_to_next()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), wait)
    finally:
        await listener.close()

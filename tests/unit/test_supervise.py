"""The supervisor keeps a component running whatever ends it, and a stop never hangs; the log
rate limiter lets one line per kind through per interval and counts the rest."""

import asyncio
import logging
import time

import pytest

from services.coupons import supervise
from services.coupons.logs import RepeatFilter, RepeatLimiter
from services.coupons.supervise import Supervised


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "STABLE_AFTER_S", 0.2)
    monkeypatch.setattr(supervise, "STOP_TIMEOUT_S", 0.3)


async def test_a_component_is_restarted_after_an_error_a_stray_cancellation_or_a_return() -> None:
    runs: list[str] = []
    ends = [RuntimeError("broker away"), asyncio.CancelledError(), None]
    fourth = asyncio.Event()

    async def run() -> None:
        runs.append("run")
        if len(runs) == 4:
            fourth.set()
        if len(runs) <= len(ends):
            end = ends[len(runs) - 1]
            if end is not None:
                raise end
            return
        await asyncio.sleep(3600)

    component = Supervised("c", run, max_backoff_s=0.05)
    component.start()
    async with asyncio.timeout(5):
        await fourth.wait()
    assert not component.healthy  # just restarted
    await asyncio.sleep(0.3)
    assert component.healthy and component.problem is None
    await component.stop()


async def test_healthy_says_what_it_failed_on_while_it_keeps_failing() -> None:
    async def run() -> None:
        raise ConnectionError("no broker at 127.0.0.1:1")

    component = Supervised("c", run, max_backoff_s=0.05)
    component.start()
    await asyncio.sleep(0.3)
    assert not component.healthy
    assert component.problem == "ConnectionError: no broker at 127.0.0.1:1"
    await component.stop()


async def test_a_stop_gives_up_on_a_cleanup_that_hangs() -> None:
    async def run() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.shield(asyncio.sleep(3600))  # a client close that never returns

    component = Supervised("c", run)
    component.start()
    await asyncio.sleep(0.05)
    async with asyncio.timeout(2):
        await component.stop()


def test_the_limiter_lets_one_per_key_and_interval_through_and_counts_the_rest() -> None:
    limiter = RepeatLimiter(interval_s=10)
    assert limiter.allow("a", now=0) == 0
    assert limiter.allow("a", now=1) is None
    assert limiter.allow("a", now=2) is None
    assert limiter.allow("b", now=2) == 0  # another kind is not held back
    assert limiter.allow("a", now=10.5) == 2
    assert limiter.allow("a", now=11) is None


def test_repeated_library_errors_become_one_line_with_a_count() -> None:
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage())

    logger = logging.getLogger("test.repeats")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = Keep()
    handler.addFilter(RepeatFilter(interval_s=0.2))
    logger.addHandler(handler)
    try:
        for attempt in range(1000):
            logger.error("Unable connect to %r: %r", "127.0.0.1:9092", attempt)
        logger.info("an info line always passes")
        time.sleep(0.25)
        logger.error("Unable connect to %r: %r", "127.0.0.1:9092", "again")
    finally:
        logger.removeHandler(handler)
    assert len(kept) == 3, kept
    assert kept[0] == "Unable connect to '127.0.0.1:9092': 0"
    assert kept[2].endswith("[999 like it dropped in 0.2 s]"), kept[2]

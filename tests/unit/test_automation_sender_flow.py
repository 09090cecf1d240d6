"""The sender's flow, in memory: the bound on runs in flight, and outcomes written off the
coupon's path, those answered during a write coalesced into the next one."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from services.coupons.automations.in_flight import InFlight
from services.coupons.automations.outcomes import Outcomes


async def test_a_claim_waits_for_room_and_each_answer_frees_one_place() -> None:
    in_flight = InFlight(3)
    assert await in_flight.room() == 3
    in_flight.take(3)
    waiting = asyncio.create_task(in_flight.room())
    await asyncio.sleep(0)
    assert not waiting.done()  # full: the next claim waits
    in_flight.done()
    assert await asyncio.wait_for(waiting, 1) == 1
    with pytest.raises(ValueError, match="exceed"):
        in_flight.take(2)
    in_flight.take(1)
    assert in_flight.count == 3


async def test_two_claimers_reserve_their_limits_and_give_back_what_they_did_not_send() -> None:
    in_flight = InFlight(1000)
    first = await in_flight.room()
    in_flight.take(first)  # the first claimer holds its whole limit while it claims
    second = asyncio.create_task(in_flight.room())
    await asyncio.sleep(0)
    assert not second.done()  # the second sees no room, not the room before the first took it
    in_flight.done(first - 300)  # the first claimed 300 runs to send
    assert await asyncio.wait_for(second, 1) == 700
    in_flight.take(700)
    assert in_flight.count == 1000
    with pytest.raises(ValueError, match="only 1000"):
        in_flight.done(1001)


def test_nothing_in_flight_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        InFlight(0)


class _Pool:
    """A pool whose connection records each statement's run ids; a write blocks until
    `release` is set, so outcomes can be added while it is under way."""

    def __init__(self) -> None:
        self.written: asyncio.Queue[list[str]] = asyncio.Queue()
        self.release = asyncio.Event()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator["_Pool"]:
        yield self

    async def execute(self, _sql: str, ids: list[str], *_columns: Any) -> None:
        self.written.put_nowait(ids)
        await self.release.wait()


async def test_outcomes_answered_during_a_write_go_together_in_the_next() -> None:
    pool = _Pool()
    outcomes = Outcomes(pool)  # type: ignore[arg-type]
    writing = asyncio.create_task(outcomes.run())
    try:
        outcomes.add(("r1", "sent", None, None))
        assert await asyncio.wait_for(pool.written.get(), 1) == ["r1"]
        outcomes.add(("r2", "sent", None, None))  # while the first write is under way
        outcomes.add(("r3", "refused", "no_codes_left", "none left"))
        pool.release.set()
        assert await asyncio.wait_for(pool.written.get(), 1) == ["r2", "r3"]
    finally:
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)

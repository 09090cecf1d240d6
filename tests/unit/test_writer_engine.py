"""The writer engine's loop run in memory (`writer.engine.Writers` over `memory_kafka`): the
campaign aggregate decides commands fetched from the commands topic, appends their events in
transactions and answers on the replies topic; a retry is answered from the memo; a durable
timer fires when the (fake) clock passes it; an unreadable command is parked and the loop goes
on; a writer started again folds its state from the event log and resumes after its
checkpoint. No broker: the real one is the integration tests' (test_decider_crash.py)."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from contracts.checkout import Cart, Customer
from contracts.codec import EVENTS, REPLIES
from contracts.commands import Command, ReserveCode
from contracts.envelope import Envelope
from contracts.events import CodeRedeemed, ReservationReleased
from contracts.reasons import Reason
from contracts.replies import Reply
from contracts.topics import declare
from services.coupons.bus import kafka, local_sockets
from services.coupons.bus.same_process import SameProcess
from services.coupons.decider import CampaignAggregate
from services.coupons.writer.engine import Writers
from services.coupons.writer.transactions import TransactionStuck
from tests.unit.campaign_commands import CAMPAIGN, define, redeem
from tests.unit.memory_kafka import MemoryKafka

PARTITIONS = 2
TOPICS = declare("mem.", PARTITIONS)
WAIT_S = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def until(found: Callable[[], Any], running: asyncio.Task[None]) -> Any:
    """Wait for `found()` to be truthy, failing at once if the writers crashed."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not (value := found()):
        if running.done():
            running.result()
            raise AssertionError("the writers stopped")
        assert asyncio.get_running_loop().time() < deadline, "not within the wait"
        await asyncio.sleep(0.01)
    return value


@asynccontextmanager
async def writers(
    memory: MemoryKafka,
    clock: Clock,
    bootstrap: str = "",
    same_process: SameProcess | None = None,
    answer_here: Callable[[Reply], bool] = lambda _: False,
) -> AsyncIterator[asyncio.Task[None]]:
    engine = Writers(
        CampaignAggregate(TOPICS),
        bootstrap or f"memory-{uuid4().hex}",  # names its local sockets: no other test's
        TOPICS,
        PARTITIONS,
        answer_here,
        clients=memory,
        clock=clock,
        same_process=same_process,
    )
    running = asyncio.create_task(engine.run())
    await until(lambda: engine.ready, running)
    try:
        yield running
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def send(memory: MemoryKafka, command: Command, key: str) -> str:
    """Append a command as a gateway does; its id."""
    envelope = Envelope[Any](key=CAMPAIGN, correlation_id="test", idempotency_key=key, data=command)
    partition = kafka.partition_for(CAMPAIGN, PARTITIONS)
    memory.append(TOPICS.commands.name, partition, envelope.to_bytes(), CAMPAIGN.encode(), [])
    return str(envelope.id)


def replies(memory: MemoryKafka, command_id: str) -> list[Reply]:
    found = [REPLIES.decode(r.value).data for r in memory.records(TOPICS.replies.name)]
    return [reply for reply in found if str(reply.command_id) == command_id]


async def answer(memory: MemoryKafka, running: asyncio.Task[None], command_id: str) -> Reply:
    found: list[Reply] = await until(lambda: replies(memory, command_id), running)
    return found[-1]


def events(memory: MemoryKafka) -> list[Any]:
    return [EVENTS.decode(r.value).data for r in memory.records(TOPICS.events.name)]


async def test_commands_are_decided_in_order_answered_and_a_retry_is_answered_from_the_memo() -> (
    None
):
    memory, clock = MemoryKafka(PARTITIONS), Clock()
    async with writers(memory, clock) as running:
        defined = send(memory, define(max_redemptions=2), "define")
        redeems = [send(memory, redeem(n), f"redeem-{n}") for n in range(3)]

        assert (await answer(memory, running, defined)).outcome == "accepted"
        answers = [await answer(memory, running, r) for r in redeems]
        assert [a.outcome for a in answers] == ["accepted", "accepted", "rejected"]
        assert answers[2].reason is Reason.EXHAUSTED
        appended = len(events(memory))

        retried = send(memory, redeem(0), "redeem-0")
        again = await answer(memory, running, retried)
        assert (again.outcome, again.duplicate, again.events) == (
            "accepted",
            True,
            answers[0].events,
        )
        reused = send(memory, redeem(9), "redeem-0")
        refused = await answer(memory, running, reused)
        assert refused.reason is Reason.IDEMPOTENCY_KEY_REUSED
        assert len(events(memory)) == appended  # a retry appends nothing


async def test_a_restarted_writer_folds_its_state_and_resumes_after_its_checkpoint() -> None:
    memory, clock = MemoryKafka(PARTITIONS), Clock()
    async with writers(memory, clock) as running:
        await answer(memory, running, send(memory, define(max_redemptions=1), "define"))
        first = await answer(memory, running, send(memory, redeem(1), "redeem-1"))
        unreadable_at = len(memory.records(TOPICS.commands.name))
        partition = kafka.partition_for(CAMPAIGN, PARTITIONS)
        memory.append(TOPICS.commands.name, partition, b"not a command", None, [])
        after = await answer(memory, running, send(memory, redeem(2), "redeem-2"))
        assert after.reason is Reason.EXHAUSTED  # the loop went on past the unreadable one
    [parked] = memory.records(TOPICS.dead_letters.name)
    assert parked.value == b"not a command"
    appended = len(events(memory))
    assert unreadable_at > 0

    async with writers(memory, clock) as running:
        retried = await answer(memory, running, send(memory, redeem(1), "redeem-1"))
        assert (retried.duplicate, retried.events) == (True, first.events)
        refused = await answer(memory, running, send(memory, redeem(3), "redeem-3"))
        assert refused.reason is Reason.EXHAUSTED  # the cap held across the restart
    # nothing decided twice, and the unreadable command was not parked again
    assert len([e for e in events(memory) if isinstance(e, CodeRedeemed)]) == 1
    assert len(events(memory)) == appended + 1  # the refusal of redeem-3
    assert len(memory.records(TOPICS.dead_letters.name)) == 1


async def test_a_reservation_is_released_by_its_timer_when_the_clock_passes_its_expiry() -> None:
    memory, clock = MemoryKafka(PARTITIONS), Clock()
    async with writers(memory, clock) as running:
        await answer(memory, running, send(memory, define(max_redemptions=1), "define"))
        reserve = ReserveCode(
            campaign_id=CAMPAIGN,
            reservation_id="h1",
            code="SPRING",
            customer=Customer(contact_id="c1"),
            cart=Cart(currency="EUR", amount=1000),
            ttl_s=60,
        )
        assert (await answer(memory, running, send(memory, reserve, "hold"))).outcome == (
            "accepted"
        )
        held = await answer(memory, running, send(memory, redeem(2), "redeem-2"))
        assert held.reason is Reason.EXHAUSTED  # the hold counts against the cap

        clock.now += timedelta(seconds=61)
        released = await until(
            lambda: [e for e in events(memory) if isinstance(e, ReservationReleased)], running
        )
        assert [(e.reservation_id, e.expired) for e in released] == [("h1", True)]
        freed = await answer(memory, running, send(memory, redeem(3), "redeem-3"))
        assert freed.outcome == "accepted"


async def test_a_transaction_is_kept_begun_and_refreshed_before_the_broker_would_abort_it() -> None:
    """After every commit the next transaction is begun with its partition added, so a command
    arriving at an idle writer pays no AddPartitionsToTxn; one left unused for a third of the
    transaction timeout is aborted and begun anew, so the broker never times it out (the fake,
    as the broker, fails the commit of a transaction open longer than the timeout)."""
    memory, clock = MemoryKafka(PARTITIONS, transaction_timeout_s=0.3), Clock()
    async with writers(memory, clock) as running:
        await answer(memory, running, send(memory, define(max_redemptions=5), "define"))
        # idle for several timeouts: refreshed (aborted, empty) again and again
        await until(lambda: len([t for t in memory.transactions if not t.committed]) >= 6, running)
        accepted = await answer(memory, running, send(memory, redeem(1), "redeem-1"))
        assert accepted.outcome == "accepted"
    committed = [t for t in memory.transactions if t.committed and t.records]
    assert len(committed) == 2
    assert committed[-1].added_early, "the redemption found its transaction begun"
    refreshed = [t for t in memory.transactions if not t.committed]
    assert all(t.records == 0 and t.open_s < 0.3 for t in refreshed), refreshed


async def test_the_next_transaction_is_begun_on_a_producer_whose_markers_are_written() -> None:
    """A broker refuses a producer's next transaction until it has written the markers of its
    last one (CONCURRENT_TRANSACTIONS, retried after a backoff): the transaction begun ahead
    is never on the producer whose commit was just answered, so a busy writer's next batch
    does not wait for that retry. With two producers taking turns it always was."""
    memory, clock = MemoryKafka(PARTITIONS), Clock()
    async with writers(memory, clock) as running:
        await answer(memory, running, send(memory, define(max_redemptions=9), "define"))
        for n in range(5):
            await answer(memory, running, send(memory, redeem(n), f"redeem-{n}"))
    assert len([t for t in memory.transactions if t.committed and t.records]) == 6
    assert memory.begun_after_own_end == 0


async def test_a_command_handed_over_in_the_same_process_is_decided_and_answered_in_memory() -> (
    None
):
    """A gateway of the writer's own process hands the envelope over (`bus.same_process`):
    decided at once, its event appended, answered through `answer_here`; it never passes
    through the commands topic. With nobody listening, `hand` says so (the gateway then
    tries the socket, then the topic)."""
    memory, clock, here = MemoryKafka(PARTITIONS), Clock(), SameProcess()
    bootstrap = f"memory-{uuid4().hex}"
    owner = local_sockets.owner(bootstrap, TOPICS.commands.name, 0)
    answered: list[Reply] = []
    command = Envelope[Any](key=CAMPAIGN, correlation_id="t", data=define(max_redemptions=1))
    assert not here.hand(owner, command, None)
    partition = kafka.partition_for(CAMPAIGN, PARTITIONS)
    owner = local_sockets.owner(bootstrap, TOPICS.commands.name, partition)

    def answer_here(reply: Reply) -> bool:
        answered.append(reply)
        return True

    async with writers(memory, clock, bootstrap, here, answer_here) as running:
        await until(lambda: here.hand(owner, command, None), running)
        redeemed = Envelope[Any](key=CAMPAIGN, correlation_id="t", data=redeem(1))
        assert here.hand(owner, redeemed, None)
        await until(lambda: len(answered) == 2, running)
    assert [a.outcome for a in answered] == ["accepted", "accepted"]
    assert [a.command_id for a in answered] == [command.id, redeemed.id]
    assert [type(e).__name__ for e in events(memory)] == ["CampaignDefined", "CodeRedeemed"]
    assert memory.records(TOPICS.commands.name) == []
    assert memory.records(TOPICS.replies.name) == []


async def test_a_transaction_that_never_ends_crashes_the_writers_and_nothing_waits_on_it() -> None:
    """After an unclean restart of the broker, aiokafka's producer once never finished a
    transaction (`make chaos`): the partition's commands waited forever, and so did the
    rebalance that gave the partition up. A transaction still in flight after the transaction
    timeout now crashes the writers (their restart fences the stuck producers), and stopping
    them waits on neither the transaction nor the stuck producers' `stop` beyond that bound."""
    memory, clock = MemoryKafka(PARTITIONS, transaction_timeout_s=0.5), Clock()
    async with writers(memory, clock) as running:
        await answer(memory, running, send(memory, define(max_redemptions=5), "define"))
        memory.stuck = True
        unanswered = send(memory, redeem(1), "redeem-1")
        with pytest.raises(TransactionStuck, match="has not ended in"):
            await asyncio.wait_for(asyncio.shield(running), 10 * WAIT_S)
    assert replies(memory, unanswered) == []
    assert not [e for e in events(memory) if isinstance(e, CodeRedeemed)]

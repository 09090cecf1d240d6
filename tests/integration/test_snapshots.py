"""Snapshots and the memo's window on the real broker and database: a restarted decider folds
only the events after its last snapshot; a corrupt or outdated snapshot is skipped and the
state is still right; SIGKILLs while snapshots are written lose and double nothing; a key
past the idempotency window is a new request (and a redemption is still not counted twice)."""

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from contracts.commands import RedeemCode
from contracts.envelope import Envelope
from contracts.events import CodeRedeemed, CommandRejected
from contracts.reasons import Reason
from contracts.replies import Reply
from contracts.topics import declare
from services.coupons.bus import kafka
from services.coupons.bus.gateway import CommandGateway
from services.coupons.bus.topics import ensure_topics
from services.coupons.settings import Settings
from tests.integration.helpers import listens
from tests.integration.test_decider_crash import (
    capped_campaign,
    command_topics,
    committed_events,
    start_decider,
)

pytestmark = pytest.mark.integration

CAMPAIGN_KEY = "capped"  # capped_campaign(): 120 redemptions of 300 are accepted


def log_lines(log: Path, event: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event:
            lines.append(entry)
    return lines


def acquired(log: Path, partition: int) -> list[int]:
    """Events folded at each acquisition of `partition`, in order."""
    return [e["folded"] for e in log_lines(log, "decider.partition_acquired")
            if e["partition"] == partition]  # fmt: skip


async def snapshots_of(settings: Settings, partition: int) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT id, next_offset FROM state_snapshots WHERE partition = $1"
                " ORDER BY next_offset DESC",
                partition,
            )
        )
    except asyncpg.UndefinedTableError:  # the decider has not migrated the database yet
        return []
    finally:
        await conn.close()


async def until_logged(log: Path, event: str, count: int) -> None:
    async with asyncio.timeout(60):
        while True:
            if len(log_lines(log, event)) >= count:
                return
            await asyncio.sleep(0.2)


async def until_snapshot(settings: Settings, partition: int, at_least: int) -> int:
    """The next offset of the partition's furthest snapshot, once it is at least `at_least`."""
    async with asyncio.timeout(60):
        while True:
            found = await snapshots_of(settings, partition)
            if found and found[0]["next_offset"] >= at_least:
                return int(found[0]["next_offset"])
            await asyncio.sleep(0.2)


async def started_gateway(settings: Settings) -> CommandGateway:
    topics = declare(settings.topic_prefix, settings.partitions)
    layout = await ensure_topics(settings.kafka_bootstrap_servers, topics, 1)
    gateway = CommandGateway(settings.kafka_bootstrap_servers, topics, layout, 60)
    await gateway.start()
    return gateway


async def decide_all(gateway: CommandGateway, commands: list[Envelope[Any]]) -> list[Reply]:
    return [await gateway.decide(command) for command in commands]


def retried(command: Envelope[Any]) -> Envelope[Any]:
    """The same request with the same key, as a client's retry sends it (a new message; a
    command without a key is remembered under its id)."""
    return Envelope[Any](
        key=command.key,
        correlation_id=command.correlation_id,
        idempotency_key=command.idempotency_key or str(command.id),
        data=command.data,
    )


async def test_a_restart_folds_from_the_snapshot_and_answers_as_before(
    settings: Settings, tmp_path: Path
) -> None:
    topics, partitions = await command_topics(settings)
    mine = kafka.partition_for(CAMPAIGN_KEY, partitions)
    commands = capped_campaign()
    log = tmp_path / "decider.log"
    gateway = await started_gateway(settings)
    decider = start_decider(settings, log, COUPONS_SNAPSHOT_EVERY="50")
    try:
        await listens(settings, topics, partitions)
        first = await decide_all(gateway, commands[:180])  # one batch each: snapshots at 50,
        await until_logged(log, "snapshot.written", 3)  # 100 and 150 events, then 30 more
        decider.send_signal(signal.SIGKILL)
        decider.wait()
        decider = start_decider(settings, log, COUPONS_SNAPSHOT_EVERY="50")
        await listens(settings, topics, partitions)
        again = await decide_all(gateway, [retried(c) for c in commands[:180]])
        rest = await decide_all(gateway, commands[180:])
        events = await committed_events(settings, len(commands))
    finally:
        await gateway.stop()
        decider.terminate()
        decider.wait(timeout=30)

    assert acquired(log, mine) == [0, 30], log.read_text()[-3000:]
    assert len(log_lines(log, "snapshot.loaded")) == 2  # by the decider and by the view
    assert log_lines(log, "view.caught_up")[-1]["folded"] == 30
    # from the snapshot it answers every retry as it answered it first, and the cap holds
    assert [r.duplicate for r in again] == [True] * len(again)
    assert [(r.outcome, r.reason) for r in again] == [(r.outcome, r.reason) for r in first]
    assert {(r.outcome, r.reason) for r in rest} == {("rejected", Reason.EXHAUSTED)}
    assert len(events) == len(commands)
    assert len([e for e in events if isinstance(e.data, CodeRedeemed)]) == 120


async def test_a_corrupt_or_outdated_snapshot_is_skipped_and_the_state_is_still_right(
    settings: Settings, tmp_path: Path
) -> None:
    topics, partitions = await command_topics(settings)
    mine = kafka.partition_for(CAMPAIGN_KEY, partitions)
    commands = capped_campaign()
    log = tmp_path / "decider.log"
    gateway = await started_gateway(settings)
    decider = start_decider(settings, log, COUPONS_SNAPSHOT_EVERY="40")
    try:
        await listens(settings, topics, partitions)
        first = await decide_all(gateway, commands[:200])
        await until_snapshot(settings, mine, 150)
        decider.terminate()
        decider.wait(timeout=30)
        kept = await snapshots_of(settings, mine)
        assert len(kept) == 2, "two are kept per partition"
        conn = await asyncpg.connect(settings.database_url)
        try:  # the furthest one corrupt (a flipped byte), the one before written by old code
            await conn.execute(
                "UPDATE state_snapshot_chunks SET body = set_byte(body, 20, get_byte(body, 20)"
                " # 1) WHERE snapshot_id = $1 AND seq = 0",
                kept[0]["id"],
            )
            await conn.execute(
                "UPDATE state_snapshots SET version = 'an-older-shape' WHERE id = $1",
                kept[1]["id"],
            )
        finally:
            await conn.close()
        decider = start_decider(settings, log, COUPONS_SNAPSHOT_EVERY="40")
        await listens(settings, topics, partitions)
        again = await decide_all(gateway, [retried(c) for c in commands[:200]])
        rest = await decide_all(gateway, commands[200:])
        events = await committed_events(settings, len(commands))
    finally:
        await gateway.stop()
        decider.terminate()
        decider.wait(timeout=30)

    # skipped by the decider and by the view, each with a log line
    assert [e["snapshot"] for e in log_lines(log, "snapshot.corrupt")] == [kept[0]["id"]] * 2
    assert [e["snapshot"] for e in log_lines(log, "snapshot.outdated")] == [kept[1]["id"]] * 2
    assert acquired(log, mine) == [0, 200], "the second start folded the log from offset 0"
    assert [(r.outcome, r.reason) for r in again] == [(r.outcome, r.reason) for r in first]
    assert {(r.outcome, r.reason) for r in rest} == {("rejected", Reason.EXHAUSTED)}
    assert len([e for e in events if isinstance(e.data, CodeRedeemed)]) == 120


async def test_sigkills_while_snapshots_are_written_lose_and_double_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    """Snapshots every 7 events, so the kills land between a snapshot and the commits around
    it: every command still gets exactly one event, and the cap holds exactly."""
    topics, partitions = await command_topics(settings)
    mine = kafka.partition_for(CAMPAIGN_KEY, partitions)
    producer = kafka.producer(settings.kafka_bootstrap_servers)
    await producer.start()
    commands = capped_campaign()

    async def send(batch: list[Envelope[Any]]) -> None:
        for command in batch:
            value = command.to_bytes()
            await producer.send(topics.commands.name, value, key=b"capped", partition=mine)
            await asyncio.sleep(0.004)
        await producer.flush()

    log = tmp_path / "decider.log"
    every = {"COUPONS_SNAPSHOT_EVERY": "7"}
    try:
        decider = start_decider(settings, log, **every)
        await send(commands[:50])
        for start in (50, 110, 170):
            await until_snapshot(settings, mine, 1)
            await listens(settings, topics, partitions)  # it has loaded: kill it mid-stream
            flowing = asyncio.create_task(send(commands[start : start + 60]))
            await asyncio.sleep(0.4)
            decider.send_signal(signal.SIGKILL)
            decider.wait()
            await flowing
            decider = start_decider(settings, log, **every)
        await send(commands[230:])
        events = await committed_events(settings, len(commands))
    finally:
        await producer.stop()
        decider.terminate()
        decider.wait(timeout=30)

    loaded = [e for e in log_lines(log, "snapshot.loaded") if e["partition"] == mine]
    assert len(loaded) >= 2 * 3, "each restart, its decider and its view"
    assert len(events) == len(commands), log.read_text()[-3000:]
    assert sorted(str(e.causation_id) for e in events) == sorted(str(c.id) for c in commands)
    assert len([e for e in events if isinstance(e.data, CodeRedeemed)]) == 120
    refused = [e.data for e in events if isinstance(e.data, CommandRejected)]
    assert {e.reason for e in refused} == {Reason.EXHAUSTED} and len(refused) == 180


async def test_a_key_past_the_window_is_a_new_request(settings: Settings, tmp_path: Path) -> None:
    """Window 3 s: within it, a retry is answered from the memo and the key with another
    request is refused as reused; past it, both are new requests, decided against the state:
    the retried redemption is refused by the ledger (`redemption_exists`), not counted twice,
    and the other request is accepted."""
    topics, partitions = await command_topics(settings)
    log = tmp_path / "decider.log"
    gateway = await started_gateway(settings)
    define, redeem, second = capped_campaign()[:3]
    other = second.data.model_copy(update={"redemption_id": "r-other", "order_ref": "o-2"})
    reused = Envelope[RedeemCode](
        key=second.key, correlation_id="other", idempotency_key=second.idempotency_key, data=other
    )

    async def until_forgotten(command: Envelope[Any], remembered: Any) -> Reply:
        """Send `command` again until its key is forgotten; the first answer after that."""
        async with asyncio.timeout(30):  # 3 to 3.125 s after its decision
            while True:
                reply = await gateway.decide(retried(command))
                if not remembered(reply):
                    return reply
                await asyncio.sleep(0.2)

    decider = start_decider(settings, log, COUPONS_IDEMPOTENCY_WINDOW_S="3")
    try:
        await listens(settings, topics, partitions)
        await gateway.decide(define)
        decided_at = asyncio.get_running_loop().time()
        first = await gateway.decide(redeem)
        retry = await gateway.decide(retried(redeem))
        await gateway.decide(second)
        refused = await gateway.decide(reused)
        late = await until_forgotten(redeem, lambda r: r.duplicate)
        forgotten_after = asyncio.get_running_loop().time() - decided_at
        new = await until_forgotten(reused, lambda r: r.reason == Reason.IDEMPOTENCY_KEY_REUSED)
        events = await committed_events(settings, 5)
    finally:
        await gateway.stop()
        decider.terminate()
        decider.wait(timeout=30)

    assert (first.outcome, first.duplicate) == ("accepted", False)
    assert (retry.outcome, retry.duplicate) == ("accepted", True)
    assert refused.reason == Reason.IDEMPOTENCY_KEY_REUSED
    assert forgotten_after >= 3
    assert (late.outcome, late.reason, late.duplicate) == (
        "rejected",
        Reason.REDEMPTION_EXISTS,
        False,
    )
    assert (new.outcome, new.duplicate) == ("accepted", False)
    assert len(events) == 5  # defined, r0, r1, the late retry refused, r-other
    redeemed = [e.data.redemption_id for e in events if isinstance(e.data, CodeRedeemed)]
    assert sorted(redeemed) == ["r-other", "r0", "r1"]

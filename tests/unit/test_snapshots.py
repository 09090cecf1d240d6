"""Snapshots of a writer's partition state, in memory (the store port faked): a snapshot holds
exactly what was committed, never the batch decided since; it reads back to the same state; a
corrupt, outdated or too-far one is skipped for the one before it. And the memo's window."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from contracts.events import CodeRedeemed
from contracts.replies import EventPosition
from services.coupons.domain.idempotency import Memo
from services.coupons.writer import snapshot_codec
from services.coupons.writer.batch import (
    Batch,
    Decided,
    Decisions,
    KeyReusedOutcome,
    PartitionState,
)
from services.coupons.writer.snapshot_codec import Chunk, CorruptSnapshot, Kind
from services.coupons.writer.snapshots import Header, SharedStates, Snapshots, StoreUnavailable
from tests.unit.test_writer_batch import (
    AGGREGATE,
    CAMPAIGN,
    NOW,
    PARTITION,
    PARTITIONS,
    TOPICS,
    appended,
    define,
    record,
    redeem,
)

VERSION = "v-test"


class MemoryStore:
    """The snapshot port in memory: what PostgresSnapshots does, without PostgreSQL."""

    def __init__(self) -> None:
        self.headers_: list[Header] = []
        self.bodies: dict[int, list[tuple[Kind, bytes, bytes]]] = {}

    async def save(
        self,
        topic: str,
        partition: int,
        next_offset: int,
        consumed: int,
        version: str,
        chunks: AsyncIterator[Chunk],
    ) -> Header:
        taken = [(c.kind, c.body, c.checksum) async for c in chunks]
        count = sum(1 for kind, _, _ in taken if kind == "state")
        header = Header(len(self.headers_) + 1, next_offset, consumed, version, count,
                        len(taken) - count)  # fmt: skip
        self.bodies[header.id] = taken
        self.headers_.append(header)
        return header

    async def headers(self, topic: str, partition: int) -> list[Header]:
        return sorted(self.headers_, key=lambda h: (h.next_offset, h.id), reverse=True)

    async def chunks(self, header: Header, kind: Kind) -> AsyncIterator[tuple[bytes, bytes]]:
        for k, body, checksum in self.bodies[header.id]:
            if k == kind:
                yield body, checksum


def decide(state: PartitionState, commands: list[Any], first: int = 0, at: Any = NOW) -> Batch:
    batch = Batch()
    records = [record(first + i, c, key=f"k{first + i}") for i, c in enumerate(commands)]
    Decisions(AGGREGATE, TOPICS, PARTITIONS, now=lambda: at).decide(
        batch, state, PARTITION, records
    )
    batch.seal(state)
    return batch


def folded(events: list[Any]) -> PartitionState:
    state = PartitionState(AGGREGATE)
    for offset, envelope in enumerate(events):
        state.apply(envelope, EventPosition(partition=PARTITION, offset=offset))
    return state


async def test_a_snapshot_holds_what_was_committed_not_the_batch_decided_since() -> None:
    store, state = MemoryStore(), PartitionState(AGGREGATE)
    snapshots = Snapshots(store, TOPICS.events.name, VERSION, every=1)
    snapshots.track(PARTITION, {}, 0, 0, Memo(), 0)
    committed = decide(state, [define(), redeem(1), redeem(2)])
    events = appended(committed)
    for offset, envelope in enumerate(events):
        state.memo.place(envelope, EventPosition(partition=PARTITION, offset=offset))
    pending = decide(state, [redeem(3), redeem(4)], first=3)  # decided, not yet committed
    assert state.states[CAMPAIGN].redemptions == 4

    offsets = list(range(len(events)))
    snapshots.committed(PARTITION, committed.states, 3, offsets, state.memo, pending.remembered())
    writing = snapshots._tracked[PARTITION].writing
    assert writing is not None
    await writing

    loaded = await Snapshots(store, TOPICS.events.name, VERSION).load(PARTITION, end=len(events))
    assert loaded is not None
    assert (loaded.next_offset, loaded.consumed) == (len(events), 3)
    assert loaded.states == folded(events).states  # r1 and r2, not r3 and r4
    restored = Memo()
    restored.restore(loaded.memo)
    for outcome in committed.outcomes:
        assert restored.get(outcome.command) == state.memo.get(outcome.command)
    for outcome in pending.outcomes:
        assert restored.get(outcome.command) is None  # decided again if it never committed


async def test_large_maps_are_written_in_chunks_and_read_back_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(snapshot_codec, "CHUNK_ITEMS", 7)
    state = PartitionState(AGGREGATE)
    batch = decide(state, [define(), *[redeem(n) for n in range(40)]])
    chunks = list(snapshot_codec.encode(state.states, state.memo.buckets()))
    assert len([c for c in chunks if c.kind == "state"]) > 5  # the ledger, sliced
    states, memo = snapshot_codec.StatesDecoder(), snapshot_codec.MemoDecoder()
    for chunk in chunks:
        (states if chunk.kind == "state" else memo).feed(chunk.body, chunk.checksum)
    assert states.finish() == state.states
    restored = Memo()
    restored.restore(memo.finish())
    assert all(restored.get(o.command) == state.memo.get(o.command) for o in batch.outcomes)


def test_a_chunk_that_does_not_match_its_checksum_is_corrupt() -> None:
    state = PartitionState(AGGREGATE)
    decide(state, [define(), redeem(1)])
    [chunk, *_] = snapshot_codec.encode(state.states, state.memo.buckets())
    flipped = bytes([chunk.body[0] ^ 1]) + chunk.body[1:]
    with pytest.raises(CorruptSnapshot):
        snapshot_codec.StatesDecoder().feed(flipped, chunk.checksum)


async def test_outdated_corrupt_and_too_far_snapshots_are_skipped_for_an_earlier_one() -> None:
    store, state = MemoryStore(), PartitionState(AGGREGATE)
    writer = Snapshots(store, TOPICS.events.name, VERSION, every=1)
    batch = decide(state, [define(), redeem(1)])

    async def write(version: str, next_offset: int) -> Header:
        writer.version = version
        writer.track(PARTITION, {}, 0, 0, Memo(), 0)
        writer.committed(PARTITION, batch.states, 2, [next_offset - 1], state.memo, [])
        task = writer._tracked[PARTITION].writing
        assert task is not None
        await task
        return store.headers_[-1]

    good = await write(VERSION, 2)
    await write("v-old", 3)
    corrupt = await write(VERSION, 4)
    kind, body, checksum = store.bodies[corrupt.id][0]
    store.bodies[corrupt.id][0] = (kind, body[:-1] + b"\x00", checksum)
    await write(VERSION, 50)  # past the log's end (10): the topic was recreated

    reader = Snapshots(store, TOPICS.events.name, VERSION)
    with capture_logs() as logs:
        loaded = await reader.load(PARTITION, end=10)
    assert loaded is not None and loaded.next_offset == good.next_offset
    assert [e["event"] for e in logs] == [
        "snapshot.ahead_of_log",
        "snapshot.corrupt",
        "snapshot.outdated",
        "snapshot.loaded",
    ]


def test_the_version_changes_with_the_shape_of_the_state() -> None:
    @dataclasses.dataclass(frozen=True)
    class Before:
        a: int

    @dataclasses.dataclass(frozen=True)
    class After:
        a: int
        b: str = ""

    After.__qualname__ = Before.__qualname__
    assert snapshot_codec.fingerprint(Before) == snapshot_codec.fingerprint(Before)
    assert snapshot_codec.fingerprint(Before) != snapshot_codec.fingerprint(After)


def test_a_key_past_the_window_is_a_new_request() -> None:
    """Within the window a reused key with another request is refused; past it (and at most a
    24th of the window later), it is decided as a new request."""
    state = PartitionState(AGGREGATE, memo_window_s=3600)
    decide(state, [define(), redeem(1)])
    other = redeem(2)
    within = decide(state, [other], first=1, at=NOW + timedelta(minutes=59))
    assert [type(o) for o in within.outcomes] == [KeyReusedOutcome]
    later = NOW + timedelta(minutes=60 + 60 / 24 + 1)
    past = decide(state, [other], first=1, at=later)
    assert [type(o) for o in past.outcomes] == [Decided]
    assert [type(e.data) for e in appended(past)] == [CodeRedeemed]
    assert len(state.memo) == 1  # only the new decision is remembered


async def test_a_start_that_folded_as_many_events_as_between_snapshots_is_snapshotted() -> None:
    """A log written before snapshots existed (or whose snapshots were unsound) is folded once:
    the state loaded is stored at once, so the next start does not fold it again."""
    store, state = MemoryStore(), PartitionState(AGGREGATE)
    events = appended(decide(state, [define(), *[redeem(n) for n in range(9)]]))
    loaded = folded(events)
    snapshots = Snapshots(store, TOPICS.events.name, VERSION, every=10)
    snapshots.track(PARTITION, loaded.states, 10, len(events), loaded.memo, folded=9)
    assert snapshots._tracked[PARTITION].writing is None  # fewer than `every`
    snapshots.track(PARTITION, loaded.states, 10, len(events), loaded.memo, folded=10)
    writing = snapshots._tracked[PARTITION].writing
    assert writing is not None
    await writing
    again = await Snapshots(store, TOPICS.events.name, VERSION).load(PARTITION, len(events))
    assert again is not None and again.states == loaded.states
    assert again.next_offset == len(events)


async def test_an_unreachable_store_means_folding_the_log_not_waiting() -> None:
    class Down(MemoryStore):
        async def headers(self, topic: str, partition: int) -> list[Header]:
            raise StoreUnavailable("connection refused")

    with capture_logs() as logs:
        loaded = await Snapshots(Down(), TOPICS.events.name, VERSION).load(PARTITION, end=10)
    assert loaded is None
    assert [e["event"] for e in logs] == ["snapshot.store_unavailable"]


async def test_the_decider_and_the_view_of_one_process_read_a_snapshots_states_once() -> None:
    """Both start a partition from its last snapshot: one read, the same states, a dict each
    (a writer replaces its states in its own dict as it decides)."""
    store, state = MemoryStore(), PartitionState(AGGREGATE)
    writer = Snapshots(store, TOPICS.events.name, VERSION, every=1)
    writer.track(PARTITION, {}, 0, 0, Memo(), 0)
    committed = decide(state, [define(), redeem(1)])
    offsets = list(range(len(appended(committed))))
    writer.committed(PARTITION, committed.states, 1, offsets, state.memo, [])
    writing = writer._tracked[PARTITION].writing
    assert writing is not None
    await writing
    reads = []
    chunks = store.chunks

    def counted(header: Header, kind: Kind) -> AsyncIterator[tuple[bytes, bytes]]:
        reads.append(kind)
        return chunks(header, kind)

    store.chunks = counted  # type: ignore[method-assign]
    shared = SharedStates()
    decider = Snapshots(store, TOPICS.events.name, VERSION, shared=shared)
    view = Snapshots(store, TOPICS.events.name, VERSION, shared=shared)
    end = len(offsets)
    mine, its = await asyncio.gather(
        decider.load(PARTITION, end), view.load(PARTITION, end, memo=False)
    )
    assert mine is not None and its is not None
    assert reads == ["state", "memo"]  # the states once, the memo for the decider alone
    assert mine.states == its.states == state.states and mine.states is not its.states
    assert mine.states[CAMPAIGN] is its.states[CAMPAIGN]
    mine.states.clear()
    assert its.states == state.states
    again = await Snapshots(store, TOPICS.events.name, VERSION).load(PARTITION, end, memo=False)
    assert again is not None and again.states == state.states
    assert reads == ["state", "memo", "state"]  # not shared: read again
